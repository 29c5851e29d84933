"""One module per `correlnet` subcommand."""
