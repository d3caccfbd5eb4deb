"""charger-hello-plugin: a worked example of an actor type that lives in its own package."""

from charger_hello.greeter import GREETING, GetGreeterStats, Greet, Greeted, Greeter, GreeterStats, Greeting

__all__ = ["GREETING", "GetGreeterStats", "Greet", "Greeted", "Greeter", "GreeterStats", "Greeting"]
