// Acceptance of the executor against the limit pass: `netsor converge --json`
// on every program in programs/ over widths 256..8192. Each quantity must be
// within 4 standard errors of its limit at the largest width, and, where the
// limit is nonzero and the quantity fluctuates, its rms error must fall like
// n^s with s = -1/2 +- 0.2; a quantity whose limit vanishes like n^e (nonzero
// coefficient) must fall at that rate. A program meant to be unstable must be
// reported so. (Release build only.)
//
// Why a confirmation run: with 8 seeds the standard error is itself estimated
// (a t with 7 degrees of freedom exceeds 4 in 0.5% of draws), slopes fitted
// over six widths scatter by ~0.06, and a quantity whose limit is 0 carries an
// O(1/n) finite-width bias (ntk_mlp_train's dK: about -0.3/n, 1.6 s.e. at
// n = 8192). Over ~150 checks a correct program set then fails some check in
// a good fraction of base seeds (measured for issue 16: 5 of 757 checks over
// five base seeds). So a program with a failed check is run again with
// independent seeds (another base seed, 16 seeds), and only a check that fails
// in both runs fails the test; both runs' failures are printed. A wrong limit
// fails both runs; chance rarely does twice.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

namespace fs = std::filesystem;

namespace {

std::string converge_json(const fs::path& f, int seeds, int base_seed) {
  std::string cmd = std::string("'") + NETSOR_BIN + "' converge '" + f.string() +
                    "' --widths 256,512,1024,2048,4096,8192 --seeds " + std::to_string(seeds) + " --seed " +
                    std::to_string(base_seed) + " --json 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  REQUIRE(pipe);
  std::string out;
  char buf[4096];
  while (std::size_t k = fread(buf, 1, sizeof buf, pipe.get())) out.append(buf, k);
  return out;
}

// The failed checks of one converge run: "quantity [check]" -> what was seen.
std::map<std::string, std::string> failed_checks(const nlohmann::json& j) {
  std::map<std::string, std::string> failed;
  std::map<std::string, nlohmann::json> last;
  for (const auto& r : j["rows"]) last[r["quantity"]] = r;  // rows ascend in width
  for (const auto& [q, lim] : j["limit"].items()) {
    const auto& r = last.at(q);
    auto fail = [&](const char* check, const std::string& what) {
      failed[q + " [" + check + "]"] = what + " (" + j["verdicts"][q].get<std::string>() + ")";
    };
    if (r["width"] != 8192) fail("width", "largest width not 8192");
    double limit = lim["value"], sem = r["sem"], err = r["abs_error"], rmse = r["rmse"];
    if (!(err <= 4 * sem + 4 * lim["abs_error"].get<double>() + 1e-12))
      fail("value", "|mean - limit| = " + std::to_string(err) + " > 4 s.e. at n = 8192 (s.e. " + std::to_string(sem) + ")");
    bool fluctuates = rmse > 1e-10 * std::max(1.0, std::abs(limit));
    if (fluctuates && std::abs(limit) > 1e-12) {
      if (j["slopes"][q].is_null()) fail("rate", "no fitted rate");
      else if (std::abs(j["slopes"][q].get<double>() + 0.5) > 0.2)
        fail("rate", "rate n^" + std::to_string(j["slopes"][q].get<double>()) + ", not n^-1/2 +- 0.2");
    }
    // A quantity the order analysis says vanishes like c n^e (c != 0): the
    // finite widths follow c n^e, and their values fall at that rate.
    if (lim.contains("coefficient") && lim["coefficient"].get<double>() != 0) {
      if (j["growth"][q].is_null()) fail("order", "no fitted growth");
      else if (std::abs(j["growth"][q].get<double>() - lim["order"].get<double>()) > 0.2)
        fail("order", "values fall like n^" + std::to_string(j["growth"][q].get<double>()) + ", limit order n^" +
             std::to_string(lim["order"].get<double>()));
    }
  }
  return failed;
}

}  // namespace

TEST_CASE("every program converges to its limit at the n^-1/2 rate") {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(fs::path(NETSOR_SOURCE_DIR) / "programs"))
    if (e.path().extension() == ".tp") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 7);
  for (const auto& f : files) {
    INFO(f.filename().string());
    std::string out = converge_json(f, 8, 0);
    if (f.filename().string().find("unstable") != std::string::npos) {  // programs/sp_unstable.tp
      CHECK(out.find("unstable") != std::string::npos);
      CHECK(out.find("grow like n^") != std::string::npos);
      continue;
    }
    auto first = failed_checks(nlohmann::json::parse(out));
    if (first.empty()) continue;
    auto second = failed_checks(nlohmann::json::parse(converge_json(f, 16, 1000)));
    for (const auto& [check, seen] : first) {
      auto again = second.find(check);
      std::cout << f.filename().string() << " " << check << ": " << seen << "; with 16 fresh seeds: "
                << (again == second.end() ? "passed" : again->second) << "\n";
      CHECK_MESSAGE(again == second.end(), f.filename().string() << " " << check << " failed in both runs");
    }
  }
}
