// SPDX-License-Identifier: Apache-2.0
// The `fusemix` program: one subcommand per job. Errors become one line on stderr and an exit
// code: 2 for bad usage or bad input, 1 for anything else, 128 + N for a training run that
// SIGINT or SIGTERM (signal N) stopped after it wrote its checkpoint (docs/reliability.md).
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include <fusemix/fusemix.hpp>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"fusemix: multimodal fusion adapters (FuseMix) on cached latents"};
  app.set_version_flag("--version", fusemix::version_string);
  app.require_subcommand(1);
  // Usage errors are one line too (CLI11's default adds "Run with --help ..." on a second line).
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    std::string what = e.what();
    for (char& c : what)
      if (c == '\n') c = ' ';
    return "fusemix: usage error: " + what + " (see --help)\n";
  });
  register_train(app);
  register_eval(app);
  register_demo(app);
  register_embed(app);
  register_search(app);
  register_info(app);
  register_select(app);
  register_bench(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const fusemix_cli::interrupted& e) {
    std::cerr << "fusemix: interrupted: " << e.what() << '\n';
    return 128 + e.signal();
  } catch (const fusemix::error& e) {
    std::cerr << "fusemix: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "fusemix: failure: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
