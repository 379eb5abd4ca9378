// Acceptance of the executor against the limit pass: `netsor converge --json`
// on every program in programs/ over widths 256..8192. Each quantity must be
// within 4 standard errors of its limit at the largest width, and, where the
// limit is nonzero and the quantity fluctuates, its rms error must fall like
// n^s with s = -1/2 +- 0.2; a quantity whose limit vanishes like n^e (nonzero
// coefficient) must fall at that rate. A program meant to be unstable must be
// reported so. (Release build only: about 150 s on 2 cores.)
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

TEST_CASE("every program converges to its limit at the n^-1/2 rate") {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(fs::path(NETSOR_SOURCE_DIR) / "programs"))
    if (e.path().extension() == ".tp") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 7);
  for (const auto& f : files) {
    bool unstable = f.filename().string().find("unstable") != std::string::npos;
    std::string cmd = std::string("'") + NETSOR_BIN + "' converge '" + f.string() +
                      "' --widths 256,512,1024,2048,4096,8192 --seeds 8 --json 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
    REQUIRE(pipe);
    std::string out;
    char buf[4096];
    while (std::size_t k = fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, k);
    INFO(f.filename().string());
    if (unstable) {  // a program that must be reported unstable (programs/sp_unstable.tp)
      CHECK(out.find("unstable") != std::string::npos);
      CHECK(out.find("grow like n^") != std::string::npos);
      continue;
    }
    auto j = nlohmann::json::parse(out);
    std::map<std::string, nlohmann::json> last;
    for (const auto& r : j["rows"]) last[r["quantity"]] = r;  // rows ascend in width
    for (const auto& [q, lim] : j["limit"].items()) {
      INFO(q << ": " << j["verdicts"][q].get<std::string>());
      const auto& r = last.at(q);
      CHECK(r["width"] == 8192);
      double limit = lim["value"], sem = r["sem"], err = r["abs_error"], rmse = r["rmse"];
      CHECK(err <= 4 * sem + 4 * lim["abs_error"].get<double>() + 1e-12);
      bool fluctuates = rmse > 1e-10 * std::max(1.0, std::abs(limit));
      if (fluctuates && std::abs(limit) > 1e-12) {
        REQUIRE(!j["slopes"][q].is_null());
        CHECK(std::abs(j["slopes"][q].get<double>() + 0.5) <= 0.2);
      }
      // A quantity the order analysis says vanishes like c n^e (c != 0): the
      // finite widths follow c n^e, and their values fall at that rate.
      if (lim.contains("coefficient") && lim["coefficient"].get<double>() != 0) {
        REQUIRE(!j["growth"][q].is_null());
        CHECK(std::abs(j["growth"][q].get<double>() - lim["order"].get<double>()) <= 0.2);
      }
    }
  }
}
