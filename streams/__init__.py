"""churnwatch's transport and drivers: Kafka, Faust, files, command line, metrics."""
