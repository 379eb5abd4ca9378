// netsor spectrum: flags, and the results as a table, JSON, CSV and an SVG histogram.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "netsor/free_probability.hpp"
#include "netsor/spectrum.hpp"

namespace netsor::cli {

struct SpectrumFlags {
  std::int64_t width = 1024;
  int bins = 60;
  std::string plot, csv;
  bool eigenvalues = false;
  std::int64_t dense_max = 4096;
  int lanczos_steps = 80, lanczos_probes = 8;
  bool limit = false;         // --limit: the infinite-width law (free probability)
  int limit_points = 400;
  CLI::Option* width_opt = nullptr;  // given: the finite-width run too
};

void add_spectrum_flags(CLI::App* sub, SpectrumFlags& f);
// Runs the spectra and prints them; the exit status.
int spectrum_command(const ir::Program& p, const std::string& file, exec::Options run, const SpectrumFlags& f,
                     bool json);

std::string spectrum_table(const std::string& file, const exec::SpectrumResult& r);
// The limit laws of every `spectrum` operator (free probability).
std::vector<limit::SpectrumLimit> spectrum_limits(const ir::Program& p, int points);
std::string limit_spectrum_table(const std::vector<limit::SpectrumLimit>& l);
nlohmann::json limit_spectrum_json(const limit::SpectrumLimit& l);
// netsor derive: the pencil and fixed-point equations of every tr(...) and spectrum.
std::string free_derivations(const ir::Program& p, const limit::ZView& z, bool latex);
nlohmann::json spectrum_json(const exec::SpectrumResult& r, bool eigenvalues);
std::string spectrum_csv(const exec::SpectrumResult& r);
// One histogram per operator on the density scale, each with an empty
// <g class="limit"> where a limit density can be drawn over it.
std::string spectrum_svg(const exec::SpectrumResult& r, const std::string& title,
                         const std::vector<limit::SpectrumLimit>& lim = {});

}  // namespace netsor::cli
