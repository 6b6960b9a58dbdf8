"""The formulas the CLI tests check our output against, written out from their sources (the paper
and LongBench-Write; see ../shared/docs/method.md), independent of the C++ implementation."""
import re


def longbench_count(text: str) -> int:
    """LongBench-Write's word count: CJK ideographs + English words."""
    return len(re.findall(r"[\u4e00-\u9fff]", text)) + len(re.findall(r"\b[a-zA-Z]+\b", text))


def eq3(length, lo, hi, factor=2.0):
    """The paper's length reward (Eq. 3) with L_max = factor * hi."""
    if hi == 0:
        return 0.0
    if length < lo:
        return length / lo
    if length <= hi:
        return 1.0
    l_max = factor * hi
    return max(0.0, (l_max - length) / (l_max - hi))


def s_l(x, y):
    """LongBench-Write's length score for required length x and produced length y."""
    if y == 0:
        return 0.0
    if y > x:
        return 100 * max(0.0, 1 - (y / x - 1) / 3)
    return 100 * max(0.0, 1 - (x / y - 1) / 2)
