// Rasteriser behind plot.hpp.
#include "plot.hpp"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>

#include <fmt/format.h>

#include <grpo/core/error.hpp>

namespace lwz {
namespace {

struct Canvas {
  int width, height;
  std::vector<std::uint8_t> rgb;
  Canvas(int w, int h) : width(w), height(h), rgb(static_cast<std::size_t>(w * h * 3), 255) {}

  void pixel(int x, int y, std::array<std::uint8_t, 3> c, double alpha = 1.0) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    auto* p = &rgb[static_cast<std::size_t>((y * width + x) * 3)];
    for (int i = 0; i < 3; ++i) p[i] = static_cast<std::uint8_t>(p[i] * (1 - alpha) + c[static_cast<std::size_t>(i)] * alpha);
  }
  void rect(int x0, int y0, int x1, int y1, std::array<std::uint8_t, 3> c) {
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) pixel(x, y, c);
  }
  // Anti-aliased-ish thick line: stamp a small disc along the segment.
  void line(double x0, double y0, double x1, double y1, std::array<std::uint8_t, 3> c, double thickness = 1.6) {
    const double len = std::hypot(x1 - x0, y1 - y0);
    const int steps = std::max(1, static_cast<int>(len * 2));
    for (int s = 0; s <= steps; ++s) {
      const double t = static_cast<double>(s) / steps;
      const double x = x0 + (x1 - x0) * t, y = y0 + (y1 - y0) * t;
      for (int dy = -2; dy <= 2; ++dy)
        for (int dx = -2; dx <= 2; ++dx) {
          const double d = std::hypot(dx + 0.5 - (x - std::floor(x)), dy + 0.5 - (y - std::floor(y)));
          const double a = std::clamp(thickness / 2 + 0.5 - d, 0.0, 1.0);
          if (a > 0) pixel(static_cast<int>(std::floor(x)) + dx, static_cast<int>(std::floor(y)) + dy, c, a);
        }
    }
  }
  // Text with stb_easy_font, scaled by `scale`, top-left at (x, y).
  void text(double x, double y, const std::string& s, std::array<std::uint8_t, 3> c, double scale = 1.5) {
    static char buffer[200000];
    std::string copy = s;
    const int quads = stb_easy_font_print(0, 0, copy.data(), nullptr, buffer, sizeof(buffer));
    for (int q = 0; q < quads; ++q) {
      const float* v = reinterpret_cast<const float*>(buffer + q * 4 * 16);
      const double qx0 = v[0], qy0 = v[1], qx1 = v[2 * 4], qy1 = v[2 * 4 + 1];
      rect(static_cast<int>(x + qx0 * scale), static_cast<int>(y + qy0 * scale), static_cast<int>(x + qx1 * scale),
           static_cast<int>(y + qy1 * scale), c);
    }
  }
  static double text_width(const std::string& s, double scale = 1.5) {
    std::string copy = s;
    return stb_easy_font_width(copy.data()) * scale;
  }
};

// "Nice" tick spacing: 1, 2 or 5 times a power of ten, about `target` ticks over the range.
double nice_step(double range, int target) {
  const double raw = range / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * magnitude) return m * magnitude;
  return 10 * magnitude;
}

std::string tick_label(double v, double step) {
  if (step >= 1) return fmt::format("{:.0f}", v);
  const int digits = std::clamp(static_cast<int>(std::ceil(-std::log10(step))), 0, 6);
  return fmt::format("{:.{}f}", v, digits);
}

void draw_panel(Canvas& canvas, const Panel& panel, int top, int width, int height) {
  const std::array<std::uint8_t, 3> ink{40, 40, 40}, grid{225, 225, 225};
  const int left = 90, right = width - 200, plot_top = top + 40, bottom = top + height - 50;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const auto& s : panel.series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
    }
  canvas.text(left, top + 10, panel.title, ink, 2.0);
  if (!std::isfinite(xmin)) {
    canvas.text(left, plot_top + 40, "(no data)", ink);
    return;
  }
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax == ymin) ymax = ymin + 1;
  const double pad = (ymax - ymin) * 0.05;
  ymin -= pad, ymax += pad;
  auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * (right - left); };
  auto py = [&](double y) { return bottom - (y - ymin) / (ymax - ymin) * (bottom - plot_top); };
  const double ystep = nice_step(ymax - ymin, 5), xstep = nice_step(xmax - xmin, 8);
  for (double y = std::ceil(ymin / ystep) * ystep; y <= ymax; y += ystep) {
    canvas.rect(left, static_cast<int>(py(y)), right, static_cast<int>(py(y)) + 1, grid);
    const auto label = tick_label(y, ystep);
    canvas.text(left - 8 - Canvas::text_width(label), py(y) - 5, label, ink);
  }
  for (double x = std::ceil(xmin / xstep) * xstep; x <= xmax; x += xstep) {
    canvas.rect(static_cast<int>(px(x)), plot_top, static_cast<int>(px(x)) + 1, bottom, grid);
    const auto label = tick_label(x, xstep);
    canvas.text(px(x) - Canvas::text_width(label) / 2, bottom + 8, label, ink);
  }
  canvas.rect(left, bottom, right, bottom + 1, ink);
  canvas.rect(left, plot_top, left + 1, bottom, ink);
  canvas.text((left + right) / 2.0 - 15, bottom + 28, "step", ink);
  canvas.text(8, plot_top - 18, panel.y_label, ink);
  for (std::size_t k = 0; k < panel.series.size(); ++k) {
    const auto& s = panel.series[k];
    for (std::size_t i = 1; i < s.x.size(); ++i)
      if (std::isfinite(s.y[i - 1]) && std::isfinite(s.y[i])) canvas.line(px(s.x[i - 1]), py(s.y[i - 1]), px(s.x[i]), py(s.y[i]), s.color);
    if (s.x.size() == 1 && std::isfinite(s.y[0])) canvas.rect(static_cast<int>(px(s.x[0])) - 2, static_cast<int>(py(s.y[0])) - 2, static_cast<int>(px(s.x[0])) + 3, static_cast<int>(py(s.y[0])) + 3, s.color);
    const int ly = plot_top + 10 + static_cast<int>(k) * 24;
    canvas.rect(right + 15, ly + 4, right + 40, ly + 8, s.color);
    canvas.text(right + 48, ly, s.name, ink);
  }
}

}  // namespace

void write_line_chart_png(const std::string& path, const std::vector<Panel>& panels, int width, int panel_height) {
  Canvas canvas(width, panel_height * static_cast<int>(panels.size()));
  for (std::size_t p = 0; p < panels.size(); ++p)
    draw_panel(canvas, panels[p], static_cast<int>(p) * panel_height, width, panel_height);
  if (!stbi_write_png(path.c_str(), canvas.width, canvas.height, 3, canvas.rgb.data(), canvas.width * 3)) {
    throw grpo::Error(path + ": cannot write the PNG file");
  }
}

}  // namespace lwz
