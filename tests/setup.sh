#!/bin/bash
# tests/setup.sh [all | qemu guest browser fuzz redis ...]
#
# Installs what darts' tests and demo need on a Debian 12 (bookworm) machine, as root.
# Idempotent: every step checks first and does nothing when its work is already done.
#
#   qemu     qemu-system-x86 from bookworm-backports (matches the qemu-utils 10 of the image;
#            bookworm's own 7.2 would make apt remove qemu-utils)
#   guest    busybox-static cpio syslinux mtools, then the tiny test guest (kernel + busybox
#            initrd + raw disk) built by tests/e2e/make-guest.sh into $DARTS_E2E_GUEST
#            (default target/e2e-guest)
#   browser  chromium fonts-liberation novnc websockify, and `npm ci` in tests/e2e/node
#            (playwright-core drives Debian's chromium; no browser download)
#   fuzz     cargo-fuzz, when `cargo fuzz --version` fails
#   deb      cargo-deb (when `cargo deb --version` fails) and systemd (for systemd-analyze), for
#            tests/packaging.rs: the Debian package is built, installed with dpkg and purged
#   mail     python3-aiosmtpd, for the SMTP sink of tests/auth_mail.rs (tests/support/smtp-sink.py)
#   build    libpam0g-dev: what building darts itself needs
#   auth     dovecot-imapd slapd ldap-utils libpam0g-dev, for tests/auth_servers.rs (IMAP and LDAP
#            servers started by the tests on loopback; PAM headers for the local method). The
#            packages' own daemons are not used (the machine's policy-rc.d keeps them stopped).
#   proxies  apache2 nginx libnginx-mod-stream, for tests/reverse_proxy.rs (both started by the
#            tests in the foreground on loopback with their own configuration; the packages'
#            own daemons are not used)
#   redis    redis-server (with redis-cli), for tests/redis_registry.rs (started by the tests on
#            loopback in a scratch directory, without persistence; the package's own daemon is
#            not used)
#
# Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive

parts=" ${*:-all} "
want() { [[ $parts == *" all "* || $parts == *" $1 "* ]]; }

timings=()
step() { # step NAME COMMAND...
  local name=$1; shift
  local t0=$SECONDS
  echo "==> setup: $name"
  "$@"
  timings+=("$(printf '%-28s %4d s' "$name" $((SECONDS - t0)))")
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

installed() { # installed PKG... -> true if every package is installed
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || return 1
  done
}

APT_UPDATED=0
apt_update() {
  if [ "$APT_UPDATED" = 0 ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
}

apt_install() { # apt_install [-t SUITE] PKG...
  apt_update
  as_root apt-get install -y -qq --no-install-recommends "$@" > /dev/null
}

qemu_ok() {
  installed qemu-system-x86 qemu-utils || return 1
  local v
  v=$(dpkg-query -W -f='${Version}' qemu-system-x86)
  dpkg --compare-versions "$v" ge '1:8' # the backports build, not bookworm's 7.2
}

install_qemu() {
  if qemu_ok; then
    echo "qemu-system-x86 $(dpkg-query -W -f='${Version}' qemu-system-x86) already installed"
    return
  fi
  # Add the backports suite to the machine's existing Debian source.
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      as_root sed -i '0,/^Suites: bookworm bookworm-updates$/s//Suites: bookworm bookworm-updates bookworm-backports/' \
        /etc/apt/sources.list.d/debian.sources
    fi
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      # A classic sources.list: reuse its first Debian mirror line.
      local line
      line=$(grep -hE '^deb +[^ ]+ +bookworm +' /etc/apt/sources.list 2>/dev/null | head -1 || true)
      [ -n "$line" ] || { echo "cannot find a bookworm apt source to add bookworm-backports to" >&2; exit 1; }
      echo "$line" | sed -E 's/ bookworm / bookworm-backports /' | as_root tee /etc/apt/sources.list.d/bookworm-backports.list > /dev/null
    fi
    APT_UPDATED=0
  fi
  apt_install -t bookworm-backports qemu-system-x86 qemu-utils
  qemu-system-x86_64 --version | head -1
}

GUEST_PKGS=(busybox-static cpio syslinux syslinux-common mtools)
BROWSER_PKGS=(chromium fonts-liberation novnc websockify)
MAIL_PKGS=(python3-aiosmtpd)
AUTH_PKGS=(dovecot-imapd slapd ldap-utils libpam0g-dev)
PROXY_PKGS=(apache2 nginx libnginx-mod-stream)
REDIS_PKGS=(redis-server)

install_guest_tools() {
  if installed "${GUEST_PKGS[@]}"; then echo "guest tools already installed"; return; fi
  apt_install "${GUEST_PKGS[@]}"
}

install_browser() {
  if installed "${BROWSER_PKGS[@]}"; then echo "chromium, novnc, websockify already installed"; return; fi
  apt_install "${BROWSER_PKGS[@]}"
}

# C libraries darts links against (PAM for local accounts).
install_build_libs() {
  if installed libpam0g-dev; then echo "libpam0g-dev already installed"; return; fi
  apt_install libpam0g-dev
}

install_mail() {
  if installed "${MAIL_PKGS[@]}"; then echo "python3-aiosmtpd already installed"; return; fi
  apt_install "${MAIL_PKGS[@]}"
}

install_auth_servers() {
  if installed "${AUTH_PKGS[@]}"; then echo "dovecot, slapd, ldap-utils, libpam0g-dev already installed"; return; fi
  # slapd asks questions on install: answer them beforehand (its default instance is unused).
  printf '%s\n' 'slapd slapd/no_configuration boolean false' 'slapd slapd/domain string darts.test' \
    'slapd shared/organization string darts' 'slapd slapd/password1 password adminpw' \
    'slapd slapd/password2 password adminpw' | as_root debconf-set-selections
  apt_install "${AUTH_PKGS[@]}"
}

install_proxies() {
  if installed "${PROXY_PKGS[@]}"; then echo "apache2, nginx already installed"; return; fi
  apt_install "${PROXY_PKGS[@]}"
}

install_redis() {
  if installed "${REDIS_PKGS[@]}"; then echo "redis-server already installed"; return; fi
  apt_install "${REDIS_PKGS[@]}"
}

npm_ci() {
  local dir=$ROOT/tests/e2e/node
  if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
    echo "node/npm missing: installing Debian's nodejs and npm" >&2
    apt_install nodejs npm
  fi
  local want have
  want=$(node -p "require('$dir/package-lock.json').packages['node_modules/playwright-core'].version")
  have=$(node -p "try { require('$dir/node_modules/playwright-core/package.json').version } catch (e) { '' }")
  if [ "$want" = "$have" ]; then
    echo "playwright-core $have already installed"
    return
  fi
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

install_cargo_fuzz() {
  if cargo fuzz --version > /dev/null 2>&1; then
    echo "$(cargo fuzz --version) already installed"
    return
  fi
  cargo install --locked cargo-fuzz
}

install_deb_tools() {
  if cargo deb --version > /dev/null 2>&1; then
    echo "$(cargo deb --version) already installed"
  else
    cargo install --locked cargo-deb
  fi
  if installed systemd; then echo "systemd (systemd-analyze) already installed"; else apt_install systemd; fi
}

build_guest_into() { # build_guest_into OUTDIR FLAVOUR: (re)builds when make-guest.sh changed
  local out=$1 flavour=$2 stamp
  stamp="$(sha256sum tests/e2e/make-guest.sh | cut -d' ' -f1) $flavour"
  if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ -s "$out/disk.img" ] \
    && [ "$(cat "$out/.stamp" 2> /dev/null)" = "$stamp" ]; then
    echo "guest already built in $out"
    return
  fi
  # make-guest.sh resolves the kernel package with apt-cache: it needs package lists.
  apt-cache show linux-image-cloud-amd64 > /dev/null 2>&1 || apt_update
  bash tests/e2e/make-guest.sh "$out" "$flavour"
  echo "$stamp" > "$out/.stamp"
}

# The test guest boots fastest on Debian's cloud kernel (no USB); the demo machine, which
# sessions boot with the original's USB keyboard and tablet, needs the generic kernel's
# USB drivers.
build_guest() { build_guest_into "${DARTS_E2E_GUEST:-$ROOT/target/e2e-guest}" cloud; }
build_demo_guest() { build_guest_into "${DARTS_DEMO_GUEST:-$ROOT/target/demo-guest}" generic; }

t_all=$SECONDS
want build && step "apt: build libraries (libpam0g-dev)" install_build_libs
want qemu && step "apt: qemu (backports)" install_qemu
want guest && step "apt: guest tools" install_guest_tools
want browser && step "apt: chromium, novnc" install_browser
want browser && step "npm ci (playwright-core)" npm_ci
want fuzz && step "cargo-fuzz" install_cargo_fuzz
want deb && step "cargo-deb, systemd-analyze" install_deb_tools
want mail && step "apt: python3-aiosmtpd" install_mail
want auth && step "apt: dovecot, slapd, pam" install_auth_servers
want proxies && step "apt: apache2, nginx" install_proxies
want redis && step "apt: redis-server" install_redis
want guest && step "build test guest" build_guest
want guest && step "build demo machine" build_demo_guest

echo "==> setup timings"
printf '    %s\n' "${timings[@]}"
echo "    total                        $((SECONDS - t_all)) s"
