// Presenting results at the terminal and as JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <functional>
#include <string>

#include "netsor/ir.hpp"
#include "netsor/abc.hpp"
#include "netsor/converge.hpp"
#include "netsor/exec.hpp"
#include "netsor/limit.hpp"

namespace netsor::cli {

// A value to `prec` significant digits; an error as 1.23e-04.
std::string num(double v, int prec = 15);
std::string err(double e);

std::string limit_table(const std::string& file, const limit::Result& r);
nlohmann::json limit_json(const limit::Result& r);
std::string derive_text(const ir::Program& p, const limit::Result& r, bool latex);
nlohmann::json derive_json(const ir::Program& p, const limit::Result& r);
std::string run_table(const std::string& file, const exec::RunResult& r);
nlohmann::json run_json(const exec::RunResult& r);
// A note line when matrices were streamed to fit in memory (empty otherwise).
std::string streamed_note(int matrices);
std::string converge_table(const std::string& file, const exec::ConvergeResult& r);
std::string converge_csv(const exec::ConvergeResult& r);
nlohmann::json converge_json(const exec::ConvergeResult& r);
std::string abc_text(const abc::Parametrization& p, const abc::Verdict& v);
nlohmann::json abc_json(const abc::Parametrization& p, const abc::Verdict& v);
std::string abc_verify_text(const abc::Parametrization& p, const abc::Verdict& v,
                            const std::function<void(const std::string&)>& progress);
nlohmann::json abc_verify_json(const abc::Parametrization& p, const abc::Verdict& v,
                               const std::function<void(const std::string&)>& progress);
// Keeps only the reports named in `only` (all when empty); a name the program
// does not report is a UsageError listing those it does.
void keep_reports(ir::Program& p, const std::vector<std::string>& only);
// Throws ProgramError naming the path unless write_file(path, ...) can create
// its temporary and replace the file: checked before a long computation.
void check_writable(const std::string& path);
// Writes a file through a temporary renamed over it, so a failure never leaves
// a truncated file; throws ProgramError naming the path.
void write_file(const std::string& path, const std::string& text);
// SIGINT and SIGTERM end the command at once with status 130 / 143, removing a
// temporary being written (so no truncated CSV, SVG or JSON is left).
void install_signal_handlers();

}  // namespace netsor::cli
