#include "coordcheck.hpp"
namespace netsor::cli {
std::string coordcheck_svg(const CoordResult&, const std::string&) { return ""; }
}
