# The example cluster for machines with nixpkgs: the same services, and the microVM built from a
# NixOS configuration instead of the Debian kernel and a busybox initramfs. Not used here (these
# machines have no nixpkgs); to use it, replace flake.nix by:
#
#   {
#     inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";
#     inputs.procurator.url = "github:procurator/procurator?dir=nix";
#
#     outputs = { self, nixpkgs, procurator }:
#       (procurator.lib.evalCluster {
#         inherit nixpkgs;
#         modules = [ ./nixos.nix ];
#       }).outputs;
#   }
#
# evalCluster then evaluates the modules with nixpkgs.lib.evalModules (modules receive `pkgs`),
# and builds each `nixos` VM with nixpkgs.lib.nixosSystem plus procurator's guest profile
# (nix/lib/guest.nix: tmpfs root, /nix/store over virtiofs, serial console). Its
# config.system.build.toplevel has the layout the worker boots: kernel, initrd, kernel-params, init.
{ pkgs, ... }:
let
  site = pkgs.runCommand "example-site" { } ''
    mkdir -p $out
    echo ok > $out/healthz
    echo '<h1>Hello from a NixOS microVM</h1>' > $out/index.html
  '';

  web = pkgs.writeShellApplication {
    name = "web";
    runtimeInputs = [ pkgs.busybox ];
    text = ''exec httpd -f -v -p "''${PORT:-8080}" -h ${site}'';
  };
in
{
  cluster.name = "example";

  cluster.vms.web = {
    replicas = 2;
    memory = 128;
    package = web;
    env.PORT = "8080";
    ports.http.guest = 8080;
    deployment.healthChecks = [{ type = "http"; port = 8080; path = "/healthz"; }];
  };

  cluster.vms.vm = {
    memory = 512;
    ports.http = { guest = 80; host = 8082; };
    deployment.backend = "qemu";
    deployment.healthChecks = [{ type = "http"; port = 80; path = "/healthz"; gracePeriodMs = 30000; }];
    nixos = { ... }: {
      services.nginx = {
        enable = true;
        virtualHosts.default.root = site;
      };
      networking.firewall.allowedTCPPorts = [ 80 ];
    };
  };
}
