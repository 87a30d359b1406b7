# shellcheck shell=bash
# Helpers the bench/run-*.sh scripts share; source it after `cd` to the
# repository root. Each benchmark program prints `key=value` words; these read
# them and phrase the ratios of the result tables the same way everywhere.

# hs_get LINES KEY: the first value of KEY= in LINES.
hs_get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

# hs_ratio A B: A / B to two decimals ("n/a" when B is not positive).
hs_ratio() {
    python3 -c "import sys; a, b = map(float, sys.argv[1:]); print(f'{a / b:.2f}' if b > 0 else 'n/a')" "$1" "$2"
}

# hs_vs SECONDS BASE_SECONDS: "2.46x slower" or "1.18x faster" than the base.
hs_vs() {
    python3 -c "import sys; a, b = map(float, sys.argv[1:]); r = a / b; print(f'{r:.2f}x slower' if r >= 1 else f'{1 / r:.2f}x faster')" "$1" "$2"
}

# hs_cpu_name: the CPU model, for the "Command:" line of a result.
hs_cpu_name() { grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'; }
