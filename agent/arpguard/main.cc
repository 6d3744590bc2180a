// arpguard: the operator's command line. Thin: parses arguments, runs a verb.
#include <CLI/CLI.hpp>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "agent/common/parse_args.h"
#include "agent/common/standard_fds.h"
#include "agent/arpguard/commands.h"
#include "arpguard_config.h"

namespace {

int run(int argc, char** argv) {
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

  std::string socket;
  std::string socket_policy;
  bool json = false;
  bool all_vips = false;
  auto add_socket_options = [&](CLI::App* verb) {
    verb->add_option("--socket", socket, "The daemon's control socket (default: the policy's, else /run/arpguard/arpguard.sock)");
    verb->add_option("--policy", socket_policy, "Policy file whose agent.control_socket to use");
  };
  CLI::App* status = app.add_subcommand("status", "Ask arpguardd how things stand (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)");
  status->add_flag("--json", json, "The same facts as one JSON object");
  status->add_flag("--vips", all_vips, "List every VIP (by default: a summary, and the VIPs not ready)");
  add_socket_options(status);
  CLI::App* drain = app.add_subcommand("drain", "Tell the director to send no new connections to this server");
  add_socket_options(drain);
  CLI::App* resume = app.add_subcommand("resume", "Tell the director it may send new connections again");
  add_socket_options(resume);
  CLI::App* reload = app.add_subcommand("reload", "Make arpguardd read its policy again; exit 0 when it is in force and met");
  add_socket_options(reload);

  std::vector<std::string> probe_vips;
  std::vector<std::string> probe_interfaces;
  std::string probe_policy;
  int probe_wait_ms = 1000;
  bool probe_json = false;
  CLI::App* probe = app.add_subcommand(
      "probe", "Ask the wire who answers for the VIPs (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)");
  probe->add_option("VIP", probe_vips, "VIPs to ask for (default: the policy's)");
  probe->add_option("--interface", probe_interfaces, "Interface to ask on, again for more (default: the policy's ARP-facing ones)")
      ->allow_extra_args(false);
  probe->add_option("--policy", probe_policy, "Policy file (default: /etc/arpguard/policy.toml, if there is one)");
  probe->add_option("--wait", probe_wait_ms, "Milliseconds to listen after the last question (default 1000)")
      ->check(CLI::Range(0, 60000));
  probe->add_flag("--json", probe_json, "The same facts as one JSON object");

  if (auto exit_code = arpguard::parse_args(app, argc, argv)) {
    // status and probe are monitoring checks: a usage error is UNKNOWN (3), not CRITICAL.
    const std::string verb = argc > 1 ? argv[1] : "";
    return *exit_code == 2 && (verb == "status" || verb == "probe") ? 3 : *exit_code;
  }
  if (probe->parsed()) {
    return arpguard::cli::probe(probe_vips, probe_interfaces, probe_policy, probe_wait_ms, probe_json);
  }
  if (status->parsed()) return arpguard::cli::status(socket, socket_policy, json, all_vips);
  if (reload->parsed()) return arpguard::cli::reload(socket, socket_policy);
  if (drain->parsed() || resume->parsed()) return arpguard::cli::set_draining(socket, socket_policy, drain->parsed());
  if (check->parsed()) return arpguard::cli::check_config(check_file, offline);
  return arpguard::cli::apply(policy_file, dry_run);
}

}  // namespace

int main(int argc, char** argv) {
  arpguard::hold_standard_fds();
  // A reader that has gone (`| head -1`) is output that cannot be written, like a full disk.
  ::signal(SIGPIPE, SIG_IGN);
  // Output that cannot be written ends the command as a failure, not an abort
  // or a silent success: fmt throws on a failed write (stderr on a full disk,
  // say), and what stdio still holds is flushed and checked here. status and
  // probe are monitoring checks: their failure to say anything is UNKNOWN.
  const std::string verb = argc > 1 ? argv[1] : "";
  const int failed = verb == "status" || verb == "probe" ? 3 : 1;
  int code = failed;
  try {
    code = run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "arpguard: %s\n", e.what());
    return failed;
  }
  const bool flushed = std::fflush(stdout) == 0 && !std::ferror(stdout);
  if (!flushed && code == 0) {  // a failure already said what went wrong
    std::fprintf(stderr, "arpguard: cannot write to standard output: %s\n", std::strerror(errno));
    code = failed;
  }
  return code;
}
