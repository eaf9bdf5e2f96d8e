#!/usr/bin/env sh
# Installs code-server and playwright-core into ./node_modules from the lockfiles.
# code-server's own postinstall fetches ripgrep from GitHub; this does its steps with the
# system's rg instead (Debian: apt-get install ripgrep) and builds the native modules locally
# (Debian: build-essential, pkg-config, libkrb5-dev).
set -eu
cd "$(dirname "$0")"

RG=$(command -v rg) || { echo "ripgrep (rg) is missing: apt-get install -y ripgrep" >&2; exit 1; }

npm ci --no-audit --no-fund --ignore-scripts
npm rebuild --no-audit --no-fund argon2

cd node_modules/code-server/lib/vscode
# Its shrinkwrap is out of step with its package.json, so npm ci refuses it (code-server uses install).
npm install --no-audit --no-fund --omit=dev --ignore-scripts
# @vscode/ripgrep's install script leaves an existing bin/ alone.
mkdir -p node_modules/@vscode/ripgrep/bin
ln -sf "$RG" node_modules/@vscode/ripgrep/bin/rg
# node-pty's install script runs `npx node-gyp`, which needs a yes without a terminal.
npm_config_yes=true npm rebuild --no-audit --no-fund
ln -sfn node_modules node_modules.asar
ln -sf code-linux.sh bin/remote-cli/code-server
ln -sf browser-linux.sh bin/helpers/browser.sh

cd extensions
npm install --no-audit --no-fund --omit=dev --ignore-scripts
