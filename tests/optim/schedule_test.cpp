// LrSchedule (optim/schedule.hpp) against its formulas, with every expected number written out by hand:
//   warm-up (step < W):  lr = peak * (step + 1) / W
//   after it:            p = clamp((step - W) / max(1, total - W), 0, 1)
//                        lr = peak * (min_ratio + (1 - min_ratio) * shape(p))
//   shape: constant 1, linear 1 - p, cosine (1 + cos(pi p)) / 2.
#include <grpo/optim/schedule.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <catch2/catch.hpp>

namespace {
constexpr double tol = 1e-15;  // a few ulps of 1e-3: the formulas are evaluated exactly as written
}

TEST_CASE("linear warm-up: the first update already moves; the last warm-up update reaches the peak", "[schedule]") {
  const grpo::LrSchedule s{.peak = 1e-3, .warmup_steps = 4, .total_steps = 100};
  CHECK(s.at(0) == Approx(2.5e-4).margin(tol));  // 1/4 of the peak, not 0
  CHECK(s.at(1) == Approx(5.0e-4).margin(tol));
  CHECK(s.at(2) == Approx(7.5e-4).margin(tol));
  CHECK(s.at(3) == Approx(1.0e-3).margin(tol));
  CHECK(s.at(4) == Approx(1.0e-3).margin(tol));  // constant decay: the peak from here on
  CHECK(s.at(1000) == Approx(1.0e-3).margin(tol));
}

TEST_CASE("constant schedule without warm-up is the peak at every step", "[schedule]") {
  const grpo::LrSchedule defaults{};
  CHECK(defaults.at(0) == 1e-6);  // the documented default peak
  CHECK(defaults.at(12345) == 1e-6);
  const grpo::LrSchedule s{.peak = 0.1, .total_steps = 3, .min_ratio = 0.5};  // min_ratio: linear/cosine only
  for (std::int64_t step : {0, 1, 2, 3, 50}) CHECK(s.at(step) == 0.1);
}

TEST_CASE("linear decay after warm-up: peak at its start, min_ratio * peak at total_steps, flat after", "[schedule]") {
  // W = 4, total = 14: decay spans 10 updates, p = (step - 4) / 10.
  grpo::LrSchedule s{.peak = 1e-3, .warmup_steps = 4, .total_steps = 14, .decay = grpo::LrDecay::linear};
  CHECK(s.at(3) == Approx(1.0e-3).margin(tol));  // warm-up's last
  CHECK(s.at(4) == Approx(1.0e-3).margin(tol));  // p = 0
  CHECK(s.at(5) == Approx(9.0e-4).margin(tol));  // p = 0.1
  CHECK(s.at(9) == Approx(5.0e-4).margin(tol));  // p = 0.5
  CHECK(s.at(13) == Approx(1.0e-4).margin(tol));  // p = 0.9
  CHECK(s.at(14) == Approx(0.0).margin(tol));     // p = 1
  CHECK(s.at(40) == Approx(0.0).margin(tol));     // clamped
  s.min_ratio = 0.1;  // lr = peak * (0.1 + 0.9 * (1 - p))
  CHECK(s.at(4) == Approx(1.0e-3).margin(tol));
  CHECK(s.at(9) == Approx(5.5e-4).margin(tol));   // 0.1 + 0.45
  CHECK(s.at(14) == Approx(1.0e-4).margin(tol));  // the floor
  CHECK(s.at(40) == Approx(1.0e-4).margin(tol));
  CHECK(s.at(0) == Approx(2.5e-4).margin(tol));   // warm-up ignores min_ratio
}

TEST_CASE("cosine decay follows (1 + cos(pi p)) / 2 down to min_ratio", "[schedule]") {
  // No warm-up, total = 10: p = step / 10. cos(0.2 pi) = 0.80901699437494742, cos(0.3 pi) = 0.58778525229247314.
  grpo::LrSchedule s{.peak = 2.0, .total_steps = 10, .decay = grpo::LrDecay::cosine};
  CHECK(s.at(0) == Approx(2.0).margin(1e-12));
  CHECK(s.at(2) == Approx(2.0 * 0.90450849718747371).margin(1e-12));
  CHECK(s.at(3) == Approx(2.0 * 0.79389262614623657).margin(1e-12));
  CHECK(s.at(5) == Approx(1.0).margin(1e-12));                         // halfway: half the peak
  CHECK(s.at(7) == Approx(2.0 * (1.0 - 0.79389262614623657)).margin(1e-12));  // symmetric about p = 0.5
  CHECK(s.at(10) == Approx(0.0).margin(1e-12));
  CHECK(s.at(11) == Approx(0.0).margin(1e-12));
  s.min_ratio = 0.2;  // lr = 2 * (0.2 + 0.8 * shape)
  CHECK(s.at(0) == Approx(2.0).margin(1e-12));
  CHECK(s.at(3) == Approx(2.0 * (0.2 + 0.8 * 0.79389262614623657)).margin(1e-12));  // 1.67022820...
  CHECK(s.at(5) == Approx(1.2).margin(1e-12));
  CHECK(s.at(10) == Approx(0.4).margin(1e-12));
  CHECK(s.at(99) == Approx(0.4).margin(1e-12));
  s.min_ratio = 1.0;  // decay to the peak itself: constant
  CHECK(s.at(6) == Approx(2.0).margin(1e-12));
}

TEST_CASE("schedule boundaries: total_steps at or below warm-up, one-step decay", "[schedule]") {
  // total <= W: the decay span is clamped to 1 update, so the step after warm-up is already the floor.
  const grpo::LrSchedule short_run{.peak = 1.0, .warmup_steps = 4, .total_steps = 2, .decay = grpo::LrDecay::linear,
                                   .min_ratio = 0.25};
  CHECK(short_run.at(3) == 1.0);
  CHECK(short_run.at(4) == 1.0);   // p = 0
  CHECK(short_run.at(5) == 0.25);  // p = 1
  // The default total_steps = 1 without warm-up: update 0 at the peak, update 1 at the floor.
  const grpo::LrSchedule one{.peak = 1.0, .decay = grpo::LrDecay::cosine, .min_ratio = 0.5};
  CHECK(one.at(0) == 1.0);
  CHECK(one.at(1) == Approx(0.5).margin(1e-15));
  // warmup_steps = 1: update 0 is the whole peak.
  const grpo::LrSchedule w1{.peak = 3.0, .warmup_steps = 1, .total_steps = 3, .decay = grpo::LrDecay::linear};
  CHECK(w1.at(0) == 3.0);
  CHECK(w1.at(1) == 3.0);  // p = 0
  CHECK(w1.at(2) == Approx(1.5).margin(1e-15));  // p = 1/2
  CHECK(w1.at(3) == Approx(0.0).margin(1e-15));
  // A zero peak is allowed (a frozen run) and stays zero.
  const grpo::LrSchedule zero{.peak = 0.0, .warmup_steps = 2, .total_steps = 5, .decay = grpo::LrDecay::cosine};
  for (std::int64_t step = 0; step < 8; ++step) CHECK(zero.at(step) == 0.0);
}

TEST_CASE("validate names the bad field and what it expected", "[schedule]") {
  const auto message = [](const grpo::LrSchedule& s) {
    try {
      s.validate();
    } catch (const grpo::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(message({.peak = 1e-3, .warmup_steps = 10, .total_steps = 100, .min_ratio = 0.1}) == "no error");
  CHECK(message({.peak = 0.0, .min_ratio = 0.0}) == "no error");
  CHECK(message({.peak = 1e-3, .min_ratio = 1.0}) == "no error");
  CHECK_THAT(message({.peak = -1e-3}), Catch::Contains("lr: expected a finite learning rate >= 0") &&
                                           Catch::Contains("found -0.001"));
  CHECK_THAT(message({.peak = nan}), Catch::Contains("lr: expected a finite learning rate >= 0"));
  CHECK_THAT(message({.peak = inf}), Catch::Contains("lr: expected a finite learning rate >= 0"));
  CHECK_THAT(message({.warmup_steps = -1}), Catch::Contains("lr_warmup_steps: expected >= 0, found -1"));
  CHECK_THAT(message({.min_ratio = 1.5}), Catch::Contains("lr_min_ratio: expected a value in [0, 1], found 1.5"));
  CHECK_THAT(message({.min_ratio = -0.1}), Catch::Contains("lr_min_ratio: expected a value in [0, 1]"));
  CHECK_THAT(message({.min_ratio = nan}), Catch::Contains("lr_min_ratio: expected a value in [0, 1]"));
}
