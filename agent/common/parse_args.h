// Command-line parsing shared by both programs' mains.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>

namespace arpguard {

/// Parses argv. Returns the exit code when the program must end now: 0 after
/// --help or --version, 2 (with the error and usage printed) for a usage error.
inline std::optional<int> parse_args(CLI::App& app, int argc, char** argv) {
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
  return std::nullopt;
}

}  // namespace arpguard
