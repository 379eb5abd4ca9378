// A progress bar on stderr, only when it is a terminal (issue 13: every command
// that can take more than a second shows where it is and the time left).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

namespace netsor::cli {

// Steps done of the current stage's total, and the time left at the rate so
// far (per `what`: a width, a spectrum's stage).
struct Progress {
  bool on = isatty(fileno(stderr));
  std::string current;
  std::chrono::steady_clock::time_point start;
  void show(const std::string& what, int done, int total) {
    if (!on) return;
    auto now = std::chrono::steady_clock::now();
    if (what != current) current = what, start = now;
    double spent = std::chrono::duration<double>(now - start).count();
    int w = 30, k = total ? done * w / total : w;
    std::cerr << "\r" << what << " [" << std::string(k, '#') << std::string(w - k, '.') << "] " << done << "/" << total;
    if (done > 0 && done < total) std::cerr << ", about " << int(std::ceil(spent / done * (total - done))) << " s left";
    std::cerr << "      " << std::flush;
  }
  void clear() const {
    if (on) std::cerr << "\r" << std::string(78, ' ') << "\r" << std::flush;
  }
};

}  // namespace netsor::cli
