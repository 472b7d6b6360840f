# shellcheck shell=bash
# Sourced by the check scripts that need Debian's packages (tests/brokers, tests/ui).
#
# apt_install LOG PACKAGE...: installs with apt-get those of the packages that are not
# installed yet (nothing to do when all are), writing apt-get's output to LOG. Needs
# root when something is missing; says so otherwise.
apt_install() {
  local log="$1" missing=() p
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages (${missing[*]}) and not root" >&2
    return 1
  fi
  echo "installing with apt-get: ${missing[*]}" >&2
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] || echo "apt-get failed ($rc): $(tail -n 5 "$log" | tr '\n' ' ')" >&2
  return $rc
}
