// SPDX-License-Identifier: Apache-2.0
// The `fusemix` program: one subcommand per job. Errors become one line on stderr and an exit
// code: 2 for bad usage or bad input, 1 for anything else, 128 + N for a training run that
// SIGINT or SIGTERM (signal N) stopped after it wrote its checkpoint (docs/reliability.md).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include <fusemix/fusemix.hpp>

#include "commands.hpp"
#include "training.hpp"

#ifdef FUSEMIX_CLI_MPI
#include <fusemix/dist/mpi.hpp>
#endif
#ifdef FUSEMIX_CLI_NCCL
#include <memory>
namespace fusemix_cli {
// nccl.cu: `--device cuda` across the ranks, over NCCL; the token ends the group.
std::shared_ptr<void> start_nccl(fusemix::dist::mpi_communicator& world, double timeout_seconds);
}  // namespace fusemix_cli
#endif

namespace {
// Ends every rank of an MPI job with `code` after an error on this one (a rank that failed alone
// must not leave the others waiting for it); in one process, just returns the code.
int fail(int code) {
#ifdef FUSEMIX_CLI_MPI
  if (fusemix_cli::process_group().distributed()) {
    std::cerr.flush();
    MPI_Abort(MPI_COMM_WORLD, code);
  }
#endif
  return code;
}
}  // namespace

int main(int argc, char** argv) {
  // Started by mpirun (or srun): this process is one rank of the job (docs/distributed.md).
#ifdef FUSEMIX_CLI_MPI
  std::optional<fusemix::dist::mpi_session> mpi;
  std::optional<fusemix::dist::mpi_communicator> world;
  if (fusemix::dist::launched_by_mpi()) {
    mpi.emplace(&argc, &argv);
    fusemix::dist::mpi_options o;
    if (const char* t = std::getenv("FUSEMIX_DIST_TIMEOUT"); t != nullptr && std::atof(t) > 0) o.timeout_seconds = std::atof(t);
    world.emplace(MPI_COMM_WORLD, o);
    fusemix_cli::process_group() = *world;
  }
#ifdef FUSEMIX_CLI_NCCL
  // Declared after the MPI session, so the NCCL group ends before MPI is finalised.
  std::shared_ptr<void> nccl;
  if (world && world->size() > 1) nccl = fusemix_cli::start_nccl(*world, world->options().timeout_seconds);
#endif
#else
  if (const char* n = std::getenv("OMPI_COMM_WORLD_SIZE"); n != nullptr && std::atoi(n) > 1) {
    std::cerr << "fusemix: error: started as one of " << n
              << " MPI ranks, but this fusemix was built without MPI (FUSEMIX_MPI; Debian: libopenmpi-dev)\n";
    return 2;
  }
#endif
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
    // CLI11 answers a misspelt command with "A subcommand is required": name it instead.
    if (argc > 1 && argv[1][0] != '-') {
      std::string known;
      for (const CLI::App* sub : std::as_const(app).get_subcommands([](const CLI::App*) { return true; }))
        known += (known.empty() ? "" : ", ") + sub->get_name();
      if (std::as_const(app).get_subcommands([&](const CLI::App* sub) { return sub->get_name() == argv[1]; }).empty()) {
        std::cerr << "fusemix: usage error: unknown command '" << argv[1] << "' (expected one of " << known
                  << "; see --help)\n";
        return fail(2);
      }
    }
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const fusemix_cli::interrupted& e) {
    std::cerr << "fusemix: interrupted: " << e.what() << '\n';
    return 128 + e.signal();
  } catch (const fusemix::error& e) {
    std::cerr << "fusemix: error: " << e.what() << '\n';
    return fail(2);
  } catch (const std::exception& e) {
    std::cerr << "fusemix: failure: " << e.what() << '\n';
    return fail(1);
  }
  return 0;
}
