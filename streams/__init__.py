"""Transport for churnwatch: Faust app, topics, agents, timers, metrics, CLI, simulator."""
