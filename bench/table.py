"""The one table format every benchmark prints (Markdown, so it pastes into bench/README.md)."""


def print_table(head: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print()
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
