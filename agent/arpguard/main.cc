// arpguard: the operator's command line. Thin: parses arguments, runs a verb.
#include <CLI/CLI.hpp>

#include "agent/common/parse_args.h"
#include "agent/arpguard/commands.h"
#include "arpguard_config.h"

int main(int argc, char** argv) {
  CLI::App app{"arpguard - keep LVS-DR real servers' VIPs local and hidden from ARP"};
  app.set_version_flag("--version", std::string("arpguard ") + ARPGUARD_VERSION);
  app.require_subcommand(1);

  std::string check_file;
  bool offline = false;
  CLI::App* check = app.add_subcommand("check-config", "Validate a policy file (exit 0 valid, 1 invalid)");
  check->add_option("FILE", check_file, "Policy file")->required();
  check->add_flag("--offline", offline, "Skip the checks that read this machine's interfaces");

  std::string policy_file;
  bool dry_run = false;
  CLI::App* apply = app.add_subcommand("apply", "Converge the kernel to the policy once, without a daemon");
  apply->add_option("--policy", policy_file, "Policy file")->required();
  apply->add_flag("--dry-run", dry_run, "Print the plan and change nothing");

  if (auto exit_code = arpguard::parse_args(app, argc, argv)) return *exit_code;
  if (check->parsed()) return arpguard::cli::check_config(check_file, offline);
  return arpguard::cli::apply(policy_file, dry_run);
}
