# The checks the shell tests share: source it, then count with ok and fail, and finish with
#   echo "$pass passed, $failures failed"
failures=0
pass=0

ok() { pass=$((pass + 1)); }
fail() {  # fail NAME WHY [FILE]: FILE is shown, indented
  echo "FAIL: $1: $2"
  if [ $# -ge 3 ] && [ -f "$3" ]; then sed 's/^/  | /' "$3"; fi
  failures=$((failures + 1))
}
has() {  # has NAME FILE TEXT: some line of FILE contains TEXT
  if grep -qF -- "$3" "$2"; then ok; else fail "$1" "$2 does not contain '$3'" "$2"; fi
}
has_line() {  # has_line NAME FILE LINE: some line of FILE is exactly LINE
  if grep -qxF -- "$3" "$2"; then ok; else fail "$1" "$2 has no line '$3'" "$2"; fi
}
lacks() {  # lacks NAME FILE TEXT
  if grep -qF -- "$3" "$2"; then fail "$1" "$2 contains '$3'" "$2"; else ok; fi
}
count() {  # count NAME FILE TEXT N: N lines of FILE contain TEXT
  local got; got=$(grep -cF -- "$3" "$2")
  if [ "$got" -eq "$4" ]; then ok; else fail "$1" "$got lines with '$3', wanted $4" "$2"; fi
}
