#!/usr/bin/env bash
# Build (once) and cache a real Kubernetes control plane for the cluster tests.
#
# Why: the cluster tests (tests/cluster/) run the real kube-apiserver, kube-scheduler and
# kube-controller-manager so that scheduling, preemption and Deployment scaling are the real
# thing, not a mock. There is no Docker/kind on the test machines and no upstream binaries
# outside the Debian package registry, so we build them from Debian bookworm's `kubernetes`
# source package (which vendors its complete Go dependency tree) with Debian's Go 1.19.
#
# What it does:
#   * installs the Debian packages it needs if missing (Go 1.19, etcd-server, rsync, openssl,
#     Debian's reflect2 1.0.2 sources);
#   * fetches the source package through a PRIVATE apt configuration (its own sources.list with
#     a deb-src line built from the system's Debian mirror) so the system's apt sources and
#     lists are untouched;
#   * swaps the vendored github.com/modern-go/reflect2 v1.0.1 (crashes under Go >= 1.18 with
#     "fatal error: fault" in mapiterinit inside the apiserver watch cache) for Debian's 1.0.2;
#   * `make WHAT=...` the three binaries, copies them to the cache and deletes the ~1.5-1.8 GB
#     source tree and Go build cache.
#
# Output: the binaries kube-apiserver, kube-scheduler and kube-controller-manager in
#   ${KUBE_CP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-autoscaler/control-plane/<debian-version>}/bin
# The last line on stdout is that bin directory; progress goes to stderr. A second run is a
# cached no-op (< 1 s). etcd is not built: Debian's etcd-server provides /usr/bin/etcd.
#
# Environment:
#   KUBE_DEB_VERSION   Debian version of the `kubernetes` source package to build (pinned
#                      below; the reflect2 fix was verified with exactly this version). Bump
#                      the pin (and CI cache keys) when Debian publishes a new one.
#   KUBE_CP_CACHE      Cache directory (its bin/ subdirectory holds the binaries).
#   KUBE_CP_BUILD_DIR  Scratch directory for the build (default: <cache>/build, deleted after).
#   KUBE_CP_DEBIAN_MIRROR  Debian mirror URL, only used if none is found in the system's apt
#                      sources.
#   KUBE_CP_KEEP_BUILD=1   Keep the source tree and Go cache (debugging).
set -euo pipefail

readonly DEFAULT_KUBE_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
KUBE_DEB_VERSION="${KUBE_DEB_VERSION:-$DEFAULT_KUBE_DEB_VERSION}"
readonly BINARIES=(kube-apiserver kube-scheduler kube-controller-manager)
readonly APT_PACKAGES=(golang-1.19-go etcd-server rsync openssl golang-github-modern-go-reflect2-dev)
readonly GO_BIN_DIR=/usr/lib/go-1.19/bin
readonly REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

CACHE_DIR="${KUBE_CP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpu-autoscaler/control-plane/$KUBE_DEB_VERSION}"
BIN_DIR="$CACHE_DIR/bin"

log() { printf '[build-control-plane %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# True if all three binaries exist and answer --version.
kube_binaries_ok() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$BIN_DIR/$b" ]] || return 1
        "$BIN_DIR/$b" --version >/dev/null 2>&1 || return 1
    done
}
etcd_ok() { command -v etcd >/dev/null 2>&1 || [[ -x /usr/bin/etcd ]]; }
binaries_ok() { kube_binaries_ok && etcd_ok; }

# ---------------------------------------------------------------------------------------------
# Fast path: cached binaries.
if binaries_ok; then
    log "cached: $BIN_DIR"
    echo "$BIN_DIR"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Serialize concurrent builds (parallel test workers / CI jobs sharing a cache).
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.build.lock"
if ! flock -n 9; then
    log "another build holds $CACHE_DIR/.build.lock; waiting"
    flock 9
fi
if binaries_ok; then
    log "built by a concurrent run: $BIN_DIR"
    echo "$BIN_DIR"
    exit 0
fi

SUDO=()
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install packages"
    SUDO=(sudo)
fi

# ---------------------------------------------------------------------------------------------
# System packages.
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

install_packages() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local need_update=0
    for p in "${missing[@]}"; do
        # No candidate version => the package lists are stale or absent (e.g. fresh container).
        if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
            need_update=1
        fi
    done
    if [[ $need_update -eq 1 ]]; then
        log "apt-get update (a package has no install candidate)"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    fi
    log "installing: ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# dpkg-dev (dpkg-source) and make are normally present; install them too if a minimal image
# lacks them.
extra=()
command -v dpkg-source >/dev/null 2>&1 || extra+=(dpkg-dev)
command -v make >/dev/null 2>&1 || extra+=(make)
if kube_binaries_ok; then
    # Cached binaries, but a fresh machine: only the runtime packages are missing.
    install_packages etcd-server openssl
    etcd_ok || die "etcd not found (expected /usr/bin/etcd from etcd-server)"
    log "cached: $BIN_DIR"
    echo "$BIN_DIR"
    exit 0
fi
install_packages "${APT_PACKAGES[@]}" "${extra[@]}"

[[ -x "$GO_BIN_DIR/go" ]] || die "Go 1.19 not found at $GO_BIN_DIR after installing golang-1.19-go"
[[ -d "$REFLECT2_SRC" ]] || die "Debian reflect2 sources not found at $REFLECT2_SRC"
if ! command -v etcd >/dev/null 2>&1 && [[ ! -x /usr/bin/etcd ]]; then
    die "etcd not found (expected /usr/bin/etcd from etcd-server)"
fi
log "etcd: $(command -v etcd || echo /usr/bin/etcd)"

# ---------------------------------------------------------------------------------------------
# Scratch space.
BUILD_DIR="${KUBE_CP_BUILD_DIR:-$CACHE_DIR/build}"
cleanup() {
    if [[ "${KUBE_CP_KEEP_BUILD:-0}" != 1 && -d "$BUILD_DIR" ]]; then
        log "removing build dir $BUILD_DIR"
        # Go module/build caches are written read-only.
        chmod -R u+w "$BUILD_DIR" 2>/dev/null || true
        rm -rf "$BUILD_DIR"
    fi
}
trap cleanup EXIT
if [[ -d "$BUILD_DIR" ]]; then
    log "removing leftovers of an interrupted build in $BUILD_DIR"
    chmod -R u+w "$BUILD_DIR" 2>/dev/null || true
    rm -rf "$BUILD_DIR"
fi
mkdir -p "$BUILD_DIR"

# ---------------------------------------------------------------------------------------------
# Private apt configuration with deb-src lines for the system's Debian mirror.
# Prints "URI SUITE SIGNED_BY" for each Debian source (deb822 *.sources and one-line *.list)
# whose suite belongs to this release's codename and which carries the main component.
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
[[ -n "$codename" ]] || die "cannot determine the Debian codename from /etc/os-release"

discover_mirrors() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        awk -v cn="$codename" '
            /^[[:space:]]*#/ { next }
            $1 == "deb" || $1 == "deb-src" {
                signed = "-"; i = 2
                if ($2 ~ /^\[/) {
                    for (; i <= NF; i++) {
                        if ($i ~ /^\[?signed-by=/) { s = $i; sub(/^\[?signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
                        if ($i ~ /\]$/) { i++; break }
                    }
                }
                uri = $i; suite = $(i + 1); main = 0
                for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
                if (main && (suite == cn || suite ~ ("^" cn "-"))) print uri, suite, signed
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        awk -v cn="$codename" '
            function flush(   n, m, u, s, k, l, hasmain, t) {
                if (types ~ /(^| )deb(-src)?( |$)/ && enabled != "no") {
                    hasmain = 0; k = split(comps, c, " ")
                    for (l = 1; l <= k; l++) if (c[l] == "main") hasmain = 1
                    if (hasmain) {
                        n = split(uris, u, " "); m = split(suites, s, " ")
                        for (a = 1; a <= n; a++) for (b = 1; b <= m; b++)
                            if (s[b] == cn || s[b] ~ ("^" cn "-")) print u[a], s[b], (signed == "" ? "-" : signed)
                    }
                }
                types = uris = suites = comps = signed = enabled = ""
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            /^[A-Za-z-]+:/ {
                key = tolower($1); sub(/:$/, "", key); $1 = ""; val = $0; sub(/^[[:space:]]+/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "components") comps = val
                else if (key == "enabled") enabled = tolower(val)
                else if (key == "signed-by" && val ~ /^\//) signed = val
            }
            END { flush() }' "$f"
    done
}

APT_DIR="$BUILD_DIR/apt"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
SOURCES_LIST="$APT_DIR/sources.list"
: >"$SOURCES_LIST"
while read -r uri suite signed; do
    opt=""
    [[ "$signed" != "-" ]] && opt="[signed-by=$signed] "
    echo "deb-src ${opt}${uri} ${suite} main" >>"$SOURCES_LIST"
done < <(discover_mirrors | sort -u)
if [[ ! -s "$SOURCES_LIST" ]]; then
    [[ -n "${KUBE_CP_DEBIAN_MIRROR:-}" ]] ||
        die "no Debian '$codename' mirror with 'main' found in /etc/apt/sources.list(.d); set KUBE_CP_DEBIAN_MIRROR"
    echo "deb-src ${KUBE_CP_DEBIAN_MIRROR} ${codename} main" >"$SOURCES_LIST"
fi
log "private apt sources:"
sed 's/^/    /' "$SOURCES_LIST" >&2

APT_OPTS=(
    -o "Dir::Etc::SourceList=$SOURCES_LIST"
    -o "Dir::Etc::SourceParts=/nonexistent"
    -o "Dir::State::Lists=$APT_DIR/lists"
    -o "Dir::Cache=$APT_DIR/cache"
    -o "APT::Sandbox::User=root"
)
log "apt-get update (private lists)"
apt-get "${APT_OPTS[@]}" update -q >&2

SRC_PARENT="$BUILD_DIR/src"
mkdir -p "$SRC_PARENT"
log "apt-get source --download-only kubernetes=$KUBE_DEB_VERSION"
if ! (cd "$SRC_PARENT" && apt-get "${APT_OPTS[@]}" source --download-only -q "kubernetes=$KUBE_DEB_VERSION" >&2); then
    avail="$(apt-cache "${APT_OPTS[@]}" showsrc kubernetes 2>/dev/null | awk '/^Version:/ {print $2}' | sort -u | xargs)"
    die "kubernetes source $KUBE_DEB_VERSION is not available from the mirror (available: ${avail:-none}). Set KUBE_DEB_VERSION or update the pin in $0."
fi
dsc="$(ls "$SRC_PARENT"/kubernetes_*.dsc)"
TREE="$SRC_PARENT/kubernetes"
log "dpkg-source -x $dsc"
dpkg-source -q -x --no-check "$dsc" "$TREE" >&2
rm -f "$SRC_PARENT"/kubernetes_*.tar.* "$SRC_PARENT"/kubernetes_*.dsc

# ---------------------------------------------------------------------------------------------
# reflect2 1.0.1 -> Debian's 1.0.2 (Go >= 1.18 compatibility).
VENDOR_R2="$TREE/vendor/github.com/modern-go/reflect2"
[[ -d "$VENDOR_R2" ]] || die "vendored reflect2 not found at $VENDOR_R2"
log "replacing vendored reflect2 with $REFLECT2_SRC"
find "$VENDOR_R2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
find "$REFLECT2_SRC" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
    -exec cp {} "$VENDOR_R2/" \;

# ---------------------------------------------------------------------------------------------
# Build.
mkdir -p "$TREE/.go/src/k8s.io" "$BUILD_DIR/home" "$BUILD_DIR/gocache"
ln -sfn ../../.. "$TREE/.go/src/k8s.io/kubernetes"
upstream="${KUBE_DEB_VERSION#*really}"   # 1.20.5+really1.20.2-1.1+deb12u1 -> 1.20.2-1.1+deb12u1
upstream="${upstream%%-*}"               # -> 1.20.2
build_env=(
    GOPATH="$TREE/.go"
    PATH="$GO_BIN_DIR:$PATH"
    CGO_ENABLED=0
    GOPROXY=off
    GOFLAGS=
    HOME="$BUILD_DIR/home"
    GOCACHE="$BUILD_DIR/gocache"
)
# Without .git the version stamp would be v0.0.0; stamp the upstream version.
if [[ "$upstream" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    build_env+=(KUBE_GIT_VERSION="v$upstream" KUBE_GIT_TREE_STATE=clean
        KUBE_GIT_MAJOR="${upstream%%.*}" KUBE_GIT_MINOR="$(cut -d. -f2 <<<"$upstream")")
fi
start=$SECONDS
log "make WHAT=\"cmd/kube-apiserver cmd/kube-scheduler cmd/kube-controller-manager\" (several minutes)"
(cd "$TREE" && env "${build_env[@]}" \
    make WHAT="cmd/kube-apiserver cmd/kube-scheduler cmd/kube-controller-manager" >&2)
log "make finished in $((SECONDS - start)) s"

# ---------------------------------------------------------------------------------------------
# Install atomically into the cache.
tmp_bin="$CACHE_DIR/bin.tmp.$$"
rm -rf "$tmp_bin"
mkdir -p "$tmp_bin"
for b in "${BINARIES[@]}"; do
    src="$TREE/_output/bin/$b"
    [[ -x "$src" ]] || src="$(find "$TREE/_output" -type f -name "$b" -perm -u+x | head -1)"
    [[ -n "$src" && -x "$src" ]] || die "built binary $b not found under $TREE/_output"
    cp "$src" "$tmp_bin/$b"
done
rm -rf "$BIN_DIR"
mv "$tmp_bin" "$BIN_DIR"
printf '%s\n' "$KUBE_DEB_VERSION" >"$CACHE_DIR/debian-version"

binaries_ok || die "installed binaries in $BIN_DIR do not run --version"
log "$("$BIN_DIR/kube-apiserver" --version)"
log "done: $BIN_DIR"
echo "$BIN_DIR"
