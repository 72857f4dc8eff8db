// troupe: the node executable. Parses the command line (CLI11), loads the
// layered configuration, and hands over to a subcommand.

#include <CLI/CLI.hpp>
#include <iostream>
#include <limits>

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

  auto* openapi = app.add_subcommand("openapi", "print the HTTP API's OpenAPI 3.0 document");
  add_config_flags(openapi);
  auto* catalog = app.add_subcommand(
      "catalog", "print the event catalog: event types, versions, producers and consumers");
  std::string catalog_format = "md";
  catalog->add_option("--format", catalog_format, "json or md")
      ->check(CLI::IsMember({"json", "md"}));

  auto* projection = app.add_subcommand("projection", "inspect and rebuild the query views");
  projection->require_subcommand(1);
  auto* projection_list = projection->add_subcommand("list", "each view's position and health");
  add_config_flags(projection_list);
  auto* projection_rebuild = projection->add_subcommand(
      "rebuild", "replay the log into a shadow table, then swap it in (resumes if interrupted)");
  add_config_flags(projection_rebuild);
  std::string projection_name;
  std::size_t rebuild_batch = 5000;
  projection_rebuild->add_option("name", projection_name, "the projection")->required();
  projection_rebuild->add_option("--batch", rebuild_batch, "events per transaction")
      ->check(CLI::Range(1, 100000));

  auto* dead_letters = app.add_subcommand("dead-letters", "events consumers could not process");
  dead_letters->require_subcommand(1);
  auto* dead_list = dead_letters->add_subcommand("list", "list dead letters, oldest first");
  add_config_flags(dead_list);
  std::string dead_consumer;
  std::size_t dead_limit = 100;
  dead_list->add_option("--consumer", dead_consumer, "only this consumer's (projection:NAME)");
  dead_list->add_option("--limit", dead_limit, "at most this many")->check(CLI::Range(1, 100000));
  auto* dead_replay = dead_letters->add_subcommand("replay", "apply a dead letter again");
  add_config_flags(dead_replay);
  std::int64_t dead_id = 0;
  dead_replay->add_option("id", dead_id, "the dead letter's id (from list)")
      ->required()
      ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()));

  auto* cluster = app.add_subcommand("cluster", "inspect a cluster of nodes");
  cluster->require_subcommand(1);
  auto* cluster_status = cluster->add_subcommand(
      "status", "nodes, shard owners and lease ages, who runs each singleton");
  add_config_flags(cluster_status);
  bool cluster_json = false;
  cluster_status->add_flag("--json", cluster_json, "print JSON instead of a table");

  CLI11_PARSE(app, argc, argv);
  if (*catalog) return troupe::cli::print_catalog(catalog_format);

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
  if (*openapi) return troupe::cli::print_openapi(*cfg);
  if (*cluster) return troupe::cli::cluster_status_command(*cfg, cluster_json);
  if (*projection)
    return troupe::cli::projection_command(*cfg, *projection_list ? "list" : "rebuild",
                                           projection_name, rebuild_batch);
  if (*dead_letters)
    return troupe::cli::dead_letters_command(*cfg, *dead_list ? "list" : "replay", dead_id,
                                             dead_consumer, dead_limit);
  return troupe::cli::serve(*cfg, serve_options);
}
