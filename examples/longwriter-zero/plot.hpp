#pragma once
// A small PNG line-chart renderer for `longwriter-zero plot`: panels of series over the step axis,
// axes with tick labels, a legend. Pixels are drawn here; stb_image_write encodes the PNG and
// stb_easy_font supplies the glyphs (Debian libstb-dev).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace lwz {

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::array<std::uint8_t, 3> color;
};

struct Panel {
  std::string title;
  std::string y_label;
  std::vector<Series> series;
};

/// Renders the panels stacked vertically into an RGB image and writes it as PNG. Throws
/// grpo::Error when the file cannot be written.
void write_line_chart_png(const std::string& path, const std::vector<Panel>& panels, int width = 1000,
                          int panel_height = 360);

}  // namespace lwz
