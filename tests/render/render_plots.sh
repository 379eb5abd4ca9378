#!/bin/bash
# The plots people read, rendered in a real browser (headless Chromium): the
# convergence plot with many series and with few, and the coordinate checks of
# SP (unstable) and muP. A blank SVG must fail the same check (it is not vacuous).
# usage: render_plots.sh NETSOR CHROMIUM SOURCE_DIR
set -euo pipefail
netsor=$1 chromium=$2 src=$3
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cd "$src"
"$netsor" converge programs/mlp_nngp.tp --widths 256,512 --seeds 2 --plot "$d/nngp.svg" >/dev/null
"$netsor" converge programs/mup_two_widths.tp --widths 256,512 --seeds 2 --plot "$d/mup2.svg" >/dev/null
"$netsor" coordcheck programs/sp_unstable.tp --widths 128,256,512 --seeds 2 --plot "$d/sp.svg" >/dev/null
"$netsor" coordcheck programs/mup_two_widths.tp --widths 128,256,512 --seeds 2 --plot "$d/mup.svg" >/dev/null
/usr/bin/python3 tests/render/check_render.py "$chromium" "$d/nngp.svg" "$d/mup2.svg" "$d/sp.svg" "$d/mup.svg"
printf "<svg xmlns='http://www.w3.org/2000/svg' width='400' height='300'><rect width='100%%' height='100%%' fill='white'/></svg>\n" >"$d/blank.svg"
if /usr/bin/python3 tests/render/check_render.py "$chromium" "$d/blank.svg"; then
  echo "a blank picture passed the check" >&2
  exit 1
fi
echo "all plots render"
