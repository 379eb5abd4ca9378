// Plots people read (SVG, self-contained): the shared pieces, and netsor
// converge --plot. The coordinate-check plot is in coordcheck_svg.cpp.
#pragma once

#include <string>

#include "netsor/converge.hpp"

namespace netsor::cli {

// Text for SVG/XML: & < > " ' escaped (titles are file and variable names).
std::string svg_escape(const std::string& s);
// Ten well-separated colours, then hues around the circle by the golden angle
// in two lightnesses, so that no two of many series look alike.
std::string series_colour(std::size_t i);

// netsor converge --plot: on top, the rms error over seeds against width for
// every series (log-log, the n^{-1/2} guide dashed, each series' fitted slope
// in the legend, series that do not converge in red); below, one small panel
// per series: the mean and its standard error at each width, the limit as a
// line with its error as a band, and the verdict.
std::string converge_svg(const exec::ConvergeResult& r, const std::string& title);

}  // namespace netsor::cli
