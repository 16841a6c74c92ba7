#!/usr/bin/env bash
# Checks that the manual page and `clawgate --help` name the same commands, both ways:
# every top-level command is a `.SS clawgate NAME` section, every subcommand appears as
# `clawgate NAME SUB`, and the page documents no command the binary does not have.
# Usage: check-manpage.sh CLAWGATE_BINARY MANPAGE
set -euo pipefail

bin=${1:?usage: check-manpage.sh CLAWGATE_BINARY MANPAGE}
page=${2:?usage: check-manpage.sh CLAWGATE_BINARY MANPAGE}

# The commands clap lists under "Commands:" (two-space indent, name first), without `help`.
commands_of() {
    "$bin" "$@" --help | awk '/^Commands:/ {on = 1; next} on && /^$/ {exit} on && /^  [a-z]/ {print $1}' |
        grep -vx help || true
}

# The page with roff's escaped hyphens and quotes removed, so text can be matched literally.
text=$(sed -e 's/\\-/-/g' -e 's/"//g' "$page")
failures=0
fail() {
    echo "check-manpage: $*" >&2
    failures=$((failures + 1))
}

top=$(commands_of)
[ -n "$top" ] || fail "no commands parsed from '$bin --help'"
for cmd in $top; do
    grep -qx "\.SS clawgate $cmd" <<<"$text" || fail "command '$cmd' has no '.SS clawgate $cmd' section in $page"
    for sub in $(commands_of "$cmd"); do
        grep -q "clawgate $cmd $sub\b" <<<"$text" || fail "subcommand '$cmd $sub' is not described in $page"
    done
done
# The other way: nothing documented that the binary lacks.
while read -r cmd; do
    grep -qx "$cmd" <<<"$top" || fail "$page documents 'clawgate $cmd', which 'clawgate --help' does not list"
done < <(sed -n 's/^\.SS clawgate \([a-z-]*\)$/\1/p' <<<"$text")
while read -r cmd sub; do
    commands_of "$cmd" | grep -qx "$sub" || fail "$page documents 'clawgate $cmd $sub', which 'clawgate $cmd --help' does not list"
done < <(grep -E '^\.(B|BI|TP) ' <<<"$text" | grep -oE 'clawgate [a-z-]+ [a-z][a-z0-9-]*' | awk '{print $2, $3}' | sort -u |
    grep -vE ' (--|[A-Z])' || true)
for opt in --state-dir --help --version; do
    grep -q -- "$opt" <<<"$text" || fail "global option $opt is not described in $page"
done

if [ "$failures" -ne 0 ]; then
    echo "check-manpage: $failures problem(s)" >&2
    exit 1
fi
echo "check-manpage: $(wc -w <<<"$top") commands and their subcommands match $page"
