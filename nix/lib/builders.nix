# Derivations that build on a machine with no nixpkgs: plain `builtins.derivation`s whose builder
# is the host's /bin/sh with the host's coreutils, cpio and gzip on PATH (so they need
# `sandbox = false`, or `sandbox-paths = /bin /lib /lib64 /usr`). Everything they *produce* is
# self-contained: scripts run the statically linked busybox copied into the store, never a host
# tool, so a closure runs the same on any worker and inside a guest.
{ system ? "x86_64-linux" }:
let
  inherit (builtins)
    attrNames concatStringsSep genList isAttrs length listToAttrs map match toJSON;

  hostPath = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

  # One builder convention for everything below: a shell script, `set -eu`, host tools on PATH.
  mkDerivation = { name, script, ... }@attrs:
    derivation (removeAttrs attrs [ "script" ] // {
      inherit name system;
      builder = "/bin/sh";
      args = [ "-euc" script ];
      PATH = hostPath;
    });

  checkRelative = what: p:
    if match "/.*" p != null || match "(.*/)?\\.\\.(/.*)?" p != null || p == "" then
      throw "${what}: `${p}` must be a relative path without `..`"
    else p;

  # The host's statically linked busybox (Debian: busybox-static), with a symlink per applet.
  # The one impurity of this library: the store path does not change when the host's busybox
  # does. Machines of one cluster should run the same busybox-static package.
  busybox = mkDerivation {
    name = "busybox-static";
    script = ''
      src=/bin/busybox
      if [ ! -x "$src" ]; then
        echo "procurator: $src is missing; install busybox-static (apt-get install busybox-static)" >&2
        exit 1
      fi
      # A dynamically linked busybox would need the host's libc inside guests and closures. Its
      # program interpreter (PT_INTERP) sits right after the ELF headers.
      if head -c 4096 "$src" | grep -q 'ld-linux'; then
        echo "procurator: $src is dynamically linked; install busybox-static instead of busybox" >&2
        exit 1
      fi
      mkdir -p "$out/bin"
      cp "$src" "$out/bin/busybox"
      chmod 0555 "$out/bin/busybox"
      for applet in $("$out/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$out/bin/$applet"
      done
    '';
  };

  # A file in the store holding `text`; executable when `executable`.
  writeText = { name, text, executable ? false }: mkDerivation {
    inherit name text;
    passAsFile = [ "text" ];
    script = ''
      cp "$textPath" "$out"
      chmod ${if executable then "0555" else "0444"} "$out"
    '';
  };

  # A busybox shell script: `#!<busybox>/bin/sh`, PATH set to busybox's applets only.
  writeScript = { name, text, busybox ? busybox' }: writeText {
    inherit name;
    executable = true;
    text = ''
      #!${busybox}/bin/sh
      export PATH=${busybox}/bin
      ${text}
    '';
  };
  busybox' = busybox;

  # A process workload: `bin/<name>` runs `script` under busybox sh (PATH = busybox applets),
  # and `files` ({ "relative/path" = "content"; } or { … = { text; executable = true; }; })
  # land under `share/<name>/`. `@out@` in the script or files is replaced by the package's own
  # store path, so the script can find its files.
  mkProcessService = { name, script, files ? { }, busybox ? busybox' }:
    let
      paths = attrNames files;
      fileAttrs = listToAttrs (genList
        (i:
          let
            p = builtins.elemAt paths i;
            f = files.${p};
          in
          { name = "file${toString i}"; value = if isAttrs f then f.text else f; })
        (length paths));
      installFiles = concatStringsSep "\n" (genList
        (i:
          let
            p = checkRelative "mkProcessService ${name}: files" (builtins.elemAt paths i);
            f = files.${p};
            mode = if isAttrs f && (f.executable or false) then "0555" else "0444";
          in
          ''
            dest="$out/share/${name}/${p}"
            mkdir -p "$(dirname "$dest")"
            sed "s|@out@|$out|g" "$file${toString i}Path" > "$dest"
            chmod ${mode} "$dest"
          '')
        (length paths));
    in
    (mkDerivation (fileAttrs // {
      inherit name;
      passAsFile = [ "text" ] ++ attrNames fileAttrs;
      text = ''
        #!${busybox}/bin/sh
        # Procurator process workload `${name}`: runs under the busybox in its own closure.
        export PATH=${busybox}/bin
        ${script}
      '';
      script = ''
        mkdir -p "$out/bin"
        sed "s|@out@|$out|g" "$textPath" > "$out/bin/${name}"
        chmod 0555 "$out/bin/${name}"
        ${installFiles}
      '';
    })) // { meta.mainProgram = name; };

  # Kernel modules for a guest, taken from a directory laid out by scripts/example-kernel:
  # `modules/*.ko` and `modules.load` (file names in load order, dependencies first).
  #
  # The stage-1 `/init` of a Procurator guest: mount proc/sys/dev, load the modules, mount the
  # host's store (virtiofs tag `nixstore`) read-only at /nix/store, print the boot line the
  # worker waits for, and exec the `init=` of the kernel command line (the toplevel's `init`).
  # The initramfs is the root file system; there is no switch_root, the store is all a guest
  # reads.
  stage1 = ''
    #!/bin/busybox sh
    /bin/busybox mkdir -p /proc /sys /dev /run /tmp /nix/store /sbin /usr/bin /usr/sbin
    /bin/busybox --install -s
    export PATH=/bin:/sbin:/usr/bin:/usr/sbin
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    # The initramfs has no /dev/console, so the kernel started us without stdio.
    exec </dev/console >/dev/console 2>&1

    fail() {
      echo "procurator-guest: boot failed: $*"
      poweroff -f
    }

    if [ -f /lib/modules.load ]; then
      while read -r module; do
        insmod "/lib/modules/$module" || fail "cannot load kernel module $module"
      done < /lib/modules.load
    fi

    # The virtio-mmio device shows up once its driver has probed it: retry for up to 5 s.
    tries=0
    until mount -t virtiofs -o ro nixstore /nix/store 2>/dev/null; do
      tries=$((tries + 1))
      [ "$tries" -lt 100 ] || fail "cannot mount the host's /nix/store (virtiofs tag nixstore)"
      sleep 0.05
    done

    init=
    for arg in $(cat /proc/cmdline); do
      case "$arg" in
        init=*) init="''${arg#init=}" ;;
      esac
    done
    [ -n "$init" ] || fail "no init= on the kernel command line"
    [ -x "$init" ] || fail "init $init is not an executable in the shared store"

    echo "procurator-guest: booted"
    exec "$init"
  '';

  # A gzip'ed newc cpio: /init (stage 1 above), /bin/busybox and the kernel modules.
  mkGuestInitrd = { name ? "procurator-initrd", kernelModules ? null, busybox ? busybox' }:
    mkDerivation {
      inherit name stage1;
      passAsFile = [ "stage1" ];
      script = ''
        root="$PWD/root"
        mkdir -p "$root/bin" "$root/lib/modules"
        cp "${busybox}/bin/busybox" "$root/bin/busybox"
        cp "$stage1Path" "$root/init"
        chmod 0755 "$root/init" "$root/bin/busybox"
        ${if kernelModules == null then "" else ''
          cp "${kernelModules}/modules.load" "$root/lib/modules.load"
          while read -r module; do
            cp "${kernelModules}/modules/$module" "$root/lib/modules/$module"
          done < "${kernelModules}/modules.load"
        ''}
        # Same inputs, same bytes: fixed mtimes, sorted entries, no gzip timestamp.
        find "$root" -exec touch -h -d @1 {} +
        mkdir -p "$out"
        (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
          | gzip -9n > "$out/initrd"
      '';
    };

  # The stage-2 `init` of a small guest: prints `procurator-guest: init <toplevel>`, brings up
  # the network the way QEMU user networking expects it (10.0.2.15/24 via 10.0.2.2), runs
  # `script` and powers the VM off when the script exits, so the worker sees a dead service as
  # a stopped VM. SIGTERM, SIGINT and the ACPI power button power it off cleanly.
  mkGuestInit = { name, script, busybox ? busybox' }: writeScript {
    name = "${name}-init";
    inherit busybox;
    text = ''
      toplevel="''${0%/init}"
      echo "procurator-guest: init $toplevel"
      hostname ${name}
      mkdir -p /run /tmp /var/log
      ip link set lo up
      if [ -e /sys/class/net/eth0 ]; then
        ip addr add 10.0.2.15/24 dev eth0
        ip link set eth0 up
        ip route add default via 10.0.2.2
      fi

      shutdown() {
        echo "procurator-guest: powering off"
        [ -z "''${service:-}" ] || kill -TERM "$service" 2>/dev/null
        sync
        poweroff -f
      }
      trap shutdown TERM INT

      # The power button arrives as an input event; busybox acpid turns it into a signal to us.
      if ls /dev/input/event* >/dev/null 2>&1; then
        mkdir -p /etc/acpi/PWRF
        printf '#!${busybox}/bin/sh\nkill -TERM 1\n' > /etc/acpi/PWRF/00000080
        chmod 0755 /etc/acpi/PWRF/00000080
        acpid -c /etc/acpi -l /var/log/acpid.log
      fi

      ${writeScript { name = "${name}-service"; inherit busybox; text = script; }} &
      service=$!
      # `wait` returns early when a trapped signal arrives; loop until the service is gone.
      while kill -0 "$service" 2>/dev/null; do
        wait "$service"
        status=$?
      done
      echo "procurator-guest: service exited with status ''${status:-?}"
      shutdown
    '';
  };

  # A system toplevel as the worker boots it (and as NixOS lays out
  # config.system.build.toplevel): `kernel`, `initrd`, `kernel-params`, `init`.
  mkToplevel = { name ? "toplevel", kernel, initrd, init, kernelParams ? [ "console=ttyS0" "panic=-1" ] }:
    mkDerivation {
      inherit name;
      kernelParams = concatStringsSep " " kernelParams;
      script = ''
        mkdir -p "$out"
        ln -s "${kernel}" "$out/kernel"
        ln -s "${initrd}" "$out/initrd"
        ln -s "${init}" "$out/init"
        printf '%s' "$kernelParams" > "$out/kernel-params"
        for f in kernel initrd init; do
          [ -e "$out/$f" ] || { echo "procurator: mkToplevel ${name}: $f does not exist" >&2; exit 1; }
        done
      '';
    };

  # A check that every closure of a blueprint has the layout its backend needs: an executable
  # `exec` for processes; `kernel`, `initrd`, `kernel-params` and an executable `init` for VMs.
  # Building it builds every closure; `nix flake check` runs it.
  mkLayoutCheck = { blueprint }:
    let
      names = attrNames blueprint.vms;
      lines = map
        (n:
          let vm = blueprint.vms.${n}; in
          if vm.backend == "process" then
            ''check ${n} -x "${vm.closure}/${vm.exec}"''
          else
            ''
              for f in kernel initrd kernel-params; do check ${n} -e "${vm.closure}/$f"; done
              check ${n} -x "${vm.closure}/init"
            '')
        names;
    in
    mkDerivation {
      name = "procurator-closure-layout";
      script = ''
        failed=0
        check() {
          case "$2" in -x) what="an executable" ;; *) what="a file" ;; esac
          if test "$2" "$3"; then
            echo "cluster.vms.$1: $3 is $what"
          else
            echo "cluster.vms.$1: $3 is not $what" >&2
            failed=1
          fi
        }
        ${concatStringsSep "\n" lines}
        [ "$failed" = 0 ]
        echo ok > "$out"
      '';
    };
in
{
  inherit busybox writeText writeScript mkProcessService mkGuestInitrd mkGuestInit mkToplevel
    mkLayoutCheck;
}
