// troupe: the node executable. Parses the command line (CLI11), loads the
// layered configuration, and hands over to a subcommand.

#include <CLI/CLI.hpp>
#include <iostream>

#include "runtime/config.hpp"
#include "tools/troupe/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"troupe: actor-model event-sourcing runtime (bookstore node)"};
  app.require_subcommand(1);

  std::string config_file;
  std::vector<std::string> overrides;
  auto add_config_flags = [&](CLI::App* sub) {
    sub->add_option("-c,--config", config_file, "JSON file layered over the built-in defaults")
        ->check(CLI::ExistingFile);
    sub->add_option("--set", overrides, "override one key: --set aggregate.max_live=1000")
        ->type_name("KEY=VALUE");
  };

  troupe::cli::serve_options serve_options;
  auto* serve = app.add_subcommand("serve", "run a node serving the bookstore");
  add_config_flags(serve);
  serve
      ->add_option("--demo-orders", serve_options.demo_orders,
                   "place this many demo orders at start-up and report")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{10'000'000}));
  serve->add_flag("--exit-after-demo", serve_options.exit_after_demo,
                  "stop after the demo instead of serving");

  auto* show_config = app.add_subcommand("config", "print the effective configuration");
  add_config_flags(show_config);

  auto* migrate = app.add_subcommand("migrate", "bring the PostgreSQL schema up to date");
  add_config_flags(migrate);

  CLI11_PARSE(app, argc, argv);

  troupe::config::source source;
  if (!config_file.empty()) source.file = config_file;
  source.env = troupe::config::process_environment();
  source.overrides = overrides;
  auto cfg = troupe::config::load(source);
  if (!cfg) {
    std::cerr << "troupe: " << cfg.error() << "\n";
    return 2;
  }
  if (*show_config) {
    std::cout << cfg->describe();
    return 0;
  }
  if (*migrate) return troupe::cli::migrate(*cfg);
  return troupe::cli::serve(*cfg, serve_options);
}
