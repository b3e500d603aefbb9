#!/usr/bin/env bash
# Install a private Godot 4 engine (Debian unstable's `godot` package) into DIR (default .godot4/)
# and write DIR/godot4, a launcher that runs it through its own extracted glibc loader.
#
# Why: the example games under examples/godot4/ need a Godot 4 engine, Debian stable has none and
# unstable's needs a newer glibc than the machine's. So the package and its library closure are
# downloaded with a private apt configuration (own sources list, state and cache under DIR; the
# system's apt is untouched), extracted with dpkg-deb, and started through the extracted
# ld-linux with --library-path. The Debian mirror is the one the machine's apt already uses.
# Idempotent: a second run only prints the launcher and the version.
set -euo pipefail

MIN_MAJOR=4
MIN_MINOR=3
# Packages of the closure the engine does not need to run: configuration, fonts, init scripts.
SKIP_PACKAGES='^(debconf|fonts-.*|fontconfig-config|sysvinit-utils|lsb-base|x11-common|pci\.ids)$'

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$repo_root/.godot4}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
launcher="$dir/godot4"
root="$dir/root"
apt_dir="$dir/apt"

die() {
    echo "ERROR: $*" >&2
    exit 1
}

# The first Debian archive URI (one ending in /debian, so not debian-security) in the machine's apt
# sources, from one-line (.list) or deb822 (.sources) files.
debian_mirror() {
    local files=() file
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for file in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] && files+=("$file")
    done
    [ ${#files[@]} -gt 0 ] || return 0
    awk '
        /^[[:space:]]*#/ { next }
        /^deb[[:space:]]/ {
            for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break }
            next
        }
        tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }
    ' "${files[@]}" | grep -E '/debian/?$' | head -n 1 | sed 's:/*$::'
}

engine_version() {
    "$launcher" --headless --version 2>/dev/null | tail -n 1
}

check_version() {
    local version="$1" major minor
    major="${version%%.*}"
    minor="${version#*.}"
    minor="${minor%%.*}"
    [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || die "the engine printed no version ('$version') (remove $dir and run this script again)"
    if [ "$major" -ne "$MIN_MAJOR" ] || [ "$minor" -lt "$MIN_MINOR" ]; then
        die "Godot $version is not 4.x >= $MIN_MAJOR.$MIN_MINOR (set GODOT4 to a Godot 4 binary instead)"
    fi
}

report() {
    local version
    version="$(engine_version)"
    check_version "$version"
    echo "launcher: $launcher"
    echo "version: $version"
}

if [ -x "$launcher" ] && [ -f "$dir/.installed" ]; then
    report
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found (this installer needs a Debian-based machine; or set GODOT4 to a Godot 4 binary)"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (apt-get install dpkg; or set GODOT4 to a Godot 4 binary)"
mirror="$(debian_mirror)"
[ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list(.d) (add one, or set GODOT4 to a Godot 4 binary)"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || die "$keyring not found (apt-get install debian-archive-keyring)"

mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
echo "deb [signed-by=$keyring] $mirror unstable main" >"$apt_dir/sources.list"
: >"$apt_dir/status"
apt_options=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o Dir::Etc::SourceParts=/dev/null
    -o Dir::Etc::Preferences=/dev/null
    -o Dir::Etc::PreferencesParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::State::status=$apt_dir/status"
    -o "Dir::Cache=$apt_dir/cache"
    -o APT::Architecture=amd64
    -o APT::Architectures::=amd64
    -o Debug::NoLocking=1
    -o APT::Sandbox::User=root
)
echo "godot4: reading Debian unstable's package list" >&2
apt-get "${apt_options[@]}" -qq update >/dev/null || die "apt-get update of Debian unstable failed (check the network and the mirror $mirror)"

# The dependency closure as apt resolves it for an empty system (status file), without recommends.
plan="$(apt-get "${apt_options[@]}" -s install --no-install-recommends godot 2>&1)" ||
    die "package godot or one of its dependencies is missing in Debian unstable: $(grep -m1 -E ': Depends:|^E:' <<<"$plan" | sed 's/^E: //; s/^ *//')"
mapfile -t packages < <(awk '$1 == "Inst" { print $2 }' <<<"$plan" | grep -Ev "$SKIP_PACKAGES")
[ ${#packages[@]} -gt 0 ] || die "apt planned no packages for godot (remove $dir and run this script again)"

echo "godot4: downloading ${#packages[@]} packages" >&2
(cd "$apt_dir/debs" && apt-get "${apt_options[@]}" -qq download "${packages[@]}" >/dev/null) ||
    die "apt-get download of the godot packages failed (a package may have left the mirror: run this script again)"

rm -rf "$root"
mkdir -p "$root"
for deb in "$apt_dir/debs"/*.deb; do
    dpkg-deb -x "$deb" "$root"
done

binary="$(find "$root/usr" -type f -name godot -perm -u+x | head -n 1)"
[ -n "$binary" ] || die "no godot binary in the extracted packages (remove $dir and run this script again)"
loader="$(find "$root" -name ld-linux-x86-64.so.2 | head -n 1)"
[ -n "$loader" ] || die "no ld-linux-x86-64.so.2 in the extracted libc6 (remove $dir and run this script again)"
# Paths relative to DIR, prefixed at run time with the launcher's own directory (DIR may move).
library_path="$(find "$root/usr" -path '*/share' -prune -o -name 'lib*.so*' -printf '%h\n' | sort -u | sed "s|^$dir/|\$here/|" | paste -sd:)"
cat >"$launcher" <<EOF
#!/bin/sh
# Godot 4 from Debian unstable, run through its own glibc loader (written by scripts/install_godot4.sh).
here="\$(cd "\$(dirname "\$0")" && pwd)"
exec "\$here/${loader#"$dir/"}" --library-path "$library_path" "\$here/${binary#"$dir/"}" "\$@"
EOF
chmod +x "$launcher"
rm -rf "$apt_dir"
touch "$dir/.installed"
report
