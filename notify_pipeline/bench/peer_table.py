"""The peer section's figures as the two Markdown tables of issue #21: rates and CPU per message."""

from __future__ import annotations

from typing import Any

PEER_LABEL = "PgQueuer + aiohttp"


def render(result: dict[str, Any]) -> list[str]:
    """Rates (with the ratio to the peer), then CPU seconds per 1,000 messages, one column per latency."""
    cells = result["cells"]
    in_use = result["transport_in_use"]
    heading = (
        f"median of {result['rounds']}, {result['messages']:,} messages, {result['in_flight']} in flight"
    )
    lines = [
        _row([f"send path ({heading})", *(_latency(cell) for cell in cells)]),
        _row(["---"] * (len(cells) + 1)),
        _row([PEER_LABEL, *(_rate(cell["peer"]) for cell in cells)]),
    ]
    for transport in cells[0]["product"] if cells else ():
        figures = [cell["product"][transport] for cell in cells]
        lines.append(_row([_product(transport, in_use), *(_rate(f, with_ratio=True) for f in figures)]))
    lines += [
        "",
        _row(["CPU s per 1,000 messages: bench process / PostgreSQL", *(_latency(cell) for cell in cells)]),
        _row(["---"] * (len(cells) + 1)),
        _row([f"{PEER_LABEL} (the peer)", *(_cpu(cell["peer"]) for cell in cells)]),
    ]
    for transport in cells[0]["product"] if cells else ():
        label = f"{_product(transport, in_use)} (the drain)"
        lines.append(_row([label, *(_cpu(cell["product"][transport]) for cell in cells)]))
    return lines


def _row(values: list[str]) -> str:
    return "| " + " | ".join(values) + " |"


def _latency(cell: dict[str, Any]) -> str:
    if not cell["latency_ms"]:
        return "sink answers at once"
    return f"sink answers in {cell['latency_ms']:g} ms (bound {cell['bound_per_s']:,.0f})"


def _product(transport: str, in_use: str) -> str:
    return f"notify-pipeline, {transport}" + (" (in use)" if transport == in_use else "")


def _rate(figures: dict[str, Any], *, with_ratio: bool = False) -> str:
    rate = figures["messages_per_s"]
    if rate is None:
        return "-"
    text = f"{rate:,.0f} msg/s"
    if with_ratio and figures.get("ratio") is not None:
        text += f" ({figures['ratio']:.2f}x)"
    return text


def _cpu(figures: dict[str, Any]) -> str:
    per = figures["cpu_per_1000"]

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    return f"{seconds(per['process_s'])} / {seconds(per['postgres_s'])}"
