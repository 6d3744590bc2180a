// arpguardd: the agent. Runs in the foreground, systemd style.
#include <CLI/CLI.hpp>

#include "agent/arpguardd/daemon.h"
#include "arpguard_config.h"

int main(int argc, char** argv) {
  CLI::App app{"arpguardd - keep this real server's VIPs local and hidden from ARP"};
  app.set_version_flag("--version", std::string("arpguardd ") + ARPGUARD_VERSION);
  std::string policy_file = "/etc/arpguard/policy.toml";
  app.add_option("--policy", policy_file, "Policy file")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  return arpguard::Daemon(policy_file).run();
}
