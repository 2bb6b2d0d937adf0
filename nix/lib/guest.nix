# NixOS profile for a Procurator microVM built with nixpkgs.lib.nixosSystem (evalCluster adds it
# to every `cluster.vms.<name>.nixos`).
#
# The worker boots the toplevel's `kernel` and `initrd` directly (no boot loader, no disk) with
# `init=<toplevel>/init <kernel-params>` and shares the host's /nix/store read-only over virtiofs
# with the tag `nixstore`. So: root is a tmpfs, /nix/store is that share, and the console is the
# serial port. It prints the same two lines as the small guests of ./builders.nix, which the
# worker's boot detection and the examples rely on:
#   procurator-guest: booted             (stage 1, store mounted)
#   procurator-guest: init <toplevel>    (stage 2 started)
#
# This file cannot be evaluated on machines without nixpkgs; it is parse-checked in
# ci_service/tests/nix_library.rs and follows the options of NixOS 24.05 and later.
{ lib, modulesPath, ... }:
{
  imports = [
    (modulesPath + "/profiles/minimal.nix")
    (modulesPath + "/profiles/qemu-guest.nix")
  ];

  boot.loader.grub.enable = false;
  boot.initrd.availableKernelModules = [ "virtio_mmio" "virtio_pci" "virtio_net" "virtio_console" "virtiofs" ];
  boot.initrd.kernelModules = [ "virtio_mmio" "virtiofs" ];
  boot.kernelParams = [ "console=ttyS0" "panic=-1" ];
  boot.initrd.postMountCommands = ''
    echo "procurator-guest: booted" > /dev/console
  '';
  boot.postBootCommands = ''
    echo "procurator-guest: init $(readlink -f /run/current-system)" > /dev/console
  '';

  fileSystems."/" = {
    device = "rootfs";
    fsType = "tmpfs";
    options = [ "mode=0755" "size=50%" ];
  };
  fileSystems."/nix/store" = {
    device = "nixstore";
    fsType = "virtiofs";
    options = [ "ro" ];
    neededForBoot = true;
  };

  # The store belongs to the host: no daemon, no database, no garbage collection in the guest.
  nix.enable = false;
  documentation.enable = lib.mkDefault false;
  # QEMU user networking hands out 10.0.2.15 by DHCP.
  networking.useDHCP = lib.mkDefault true;
  # Only the ports declared in `cluster.vms.<name>.ports` are forwarded to the guest at all.
  networking.firewall.enable = lib.mkDefault false;
  system.stateVersion = lib.mkDefault "24.05";
}
