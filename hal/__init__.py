"""Driver interfaces (typing.Protocol) and the real drivers behind them."""
