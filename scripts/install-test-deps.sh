#!/usr/bin/env bash
# Install the Debian packages the test suite drives (real SIP peers, audio tools, packet
# capture, PostgreSQL, headless Chromium) when any of them is missing.
# Runs apt-get as root directly, otherwise through sudo. Does nothing if all are installed.
set -euo pipefail

PACKAGES=(
  sip-tester      # SIPp: scripted SIP scenarios and load
  libopus0        # Opus codec (media/opus.py loads it with ctypes when present)
  baresip-core    # a real softphone
  kamailio        # SIP edge proxy (dispatcher in front of Switchboard nodes)
  kamailio-tls-modules  # Kamailio's tls module: a carrier reached over SIP over TLS
  sipsak          # SIP swiss-army knife (OPTIONS pings, quick REGISTERs)
  sipvicious      # SIP scanner: brute-force protection tests
  sox             # audio generation and analysis
  libsox-fmt-all
  espeak-ng       # synthesised speech for IVR prompts in tests
  tshark          # packet capture for protocol assertions
  postgresql      # PostgreSQL store tests (throwaway cluster per test session)
  chromium        # headless browser for the web panel tests
  fonts-wqy-zenhei  # Chinese glyphs in the panel's screenshots (the zh page check)
)

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-test-deps: missing packages: ${missing[*]}" >&2
  echo "install-test-deps: not root and no sudo; install them as root and re-run" >&2
  exit 1
fi

echo "install-test-deps: installing ${missing[*]}" >&2
# tshark asks whether non-root users may capture; answer "no" instead of prompting.
echo "wireshark-common wireshark-common/install-setuid boolean false" |
  "${SUDO[@]}" debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
