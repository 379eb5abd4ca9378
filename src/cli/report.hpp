// Presenting results at the terminal and as JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "netsor/ir.hpp"
#include "netsor/limit.hpp"

namespace netsor::cli {

std::string limit_table(const std::string& file, const limit::Result& r);
nlohmann::json limit_json(const limit::Result& r);
std::string derive_text(const ir::Program& p, const limit::Result& r, bool latex);
nlohmann::json derive_json(const ir::Program& p, const limit::Result& r);

}  // namespace netsor::cli
