# Sourced by tpu_vm.sh and gpu_multihost.sh: the package the hosts install (a wheel built from this
# checkout, a wheel given, or a repository URL given), the experiments/ tree shipped next to it (the
# configs are not in the wheel), and commands printed (--dry-run) or printed and run.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
DRY_RUN=0
WHEEL_FILE=""
REPO_URL=""
OVERRIDES=()

die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

# One word quoted as Python's shlex.quote does, so a line printed here equals shlex.join of the argv.
_SAFE='^[A-Za-z0-9_@%+=:,./-]+$'
q() {
  if [[ $1 =~ $_SAFE ]]; then
    printf '%s' "$1"
  else
    local sq="'" esc="'\"'\"'"
    printf "'%s'" "${1//$sq/$esc}"
  fi
}

cmdline() {
  local out="" w
  for w in "$@"; do out+="${out:+ }$(q "$w")"; done
  printf '%s\n' "$out"
}

# --dry-run: print the command (stdout). Otherwise: print it to stderr with "+ " and run it.
run() {
  if ((DRY_RUN)); then
    cmdline "$@"
  else
    echo "+ $(cmdline "$@")" >&2
    "$@"
  fi
}

# Everything after WORKDIR: `--config.KEY=VALUE` overrides, passed to `lcbm train` word for word.
set_overrides() {
  local a
  for a in "$@"; do
    [[ $a == --config.?*=* ]] || die "expected --config.KEY=VALUE after WORKDIR, got '$a'"
  done
  OVERRIDES=("$@")
}

abspath() {   # no `realpath -m` on macOS, where tpu_vm.sh may well run
  case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac
}

# CONFIG (a file under experiments/, with an optional :ARG) as the hosts see it: relative to the
# shipped experiments/ tree's parent, the directory the train command runs in.
remote_config() {
  local path=${1%%:*} arg="" abs
  [[ $1 == *:* ]] && arg=":${1#*:}"
  [ -f "$path" ] || die "config file $path not found"
  abs="$(cd "$(dirname "$path")" && pwd -P)/$(basename "$path")"
  case $abs in
    "$ROOT"/experiments/*) printf '%s%s\n' "${abs#"$ROOT"/}" "$arg" ;;
    *) die "config $path is not under $ROOT/experiments/ (only experiments/ is shipped to the hosts)" ;;
  esac
}

# The wheel `python -m build` writes for this checkout (named from setup.cfg, so --dry-run knows it).
built_wheel_name() {
  local name version
  name=$(sed -n 's/^name *= *//p' "$ROOT/setup.cfg" | head -n1)
  version=$(sed -n 's/^version *= *//p' "$ROOT/setup.cfg" | head -n1)
  printf '%s-%s-py3-none-any.whl\n' "${name//-/_}" "$version"
}

# Puts the wheel into STAGE (built from the checkout, or the one given); sets WHEEL (its file name in
# STAGE), empty with --repo.
stage_wheel() {
  local stage=$1
  WHEEL=""
  if [ -n "$REPO_URL" ]; then
    [ -z "$WHEEL_FILE" ] || die "--wheel and --repo: give one"
    return
  fi
  if [ -n "$WHEEL_FILE" ]; then
    [ -f "$WHEEL_FILE" ] || die "wheel $WHEEL_FILE not found"
    WHEEL=$(basename "$WHEEL_FILE")
    run cp "$WHEEL_FILE" "$stage/$WHEEL"
  else
    WHEEL=$(built_wheel_name)
    # The full build (sdist, then the wheel from it) leaves no stale build/ files in the wheel.
    run python3 -m build --outdir "$stage" "$ROOT"
    ((DRY_RUN)) || [ -f "$stage/$WHEEL" ] || die "python3 -m build wrote no $stage/$WHEEL (pip install build?)"
  fi
}

# The pip requirement for the package with EXTRAS ("" or "[gcs]"), on a host whose cwd holds the wheel.
package_spec() {
  local extras=$1
  if [ -n "$REPO_URL" ]; then
    printf 'lcbm-jax%s @ git+%s\n' "$extras" "${REPO_URL#git+}"
  else
    printf './%s%s\n' "$WHEEL" "$extras"
  fi
}

# The host's install: the package with its dependencies and the accelerator's jax (LCBM_PIP, word
# split), then the package again, forced: a rebuilt wheel keeps its version number.
install_snippet() {
  local python=$1 extras=$2 accel=$3 line
  local -a pip_extra=()
  read -r -a pip_extra <<<"${LCBM_PIP-$accel}"
  line="$python -m pip install -q $(q "$(package_spec "$extras")")"
  if ((${#pip_extra[@]})); then line+=" $(cmdline "${pip_extra[@]}")"; fi
  printf '%s; %s -m pip install -q --no-deps --force-reinstall %s\n' "$line" "$python" "$(q "$(package_spec "")")"
}
