# The example cluster: what `pcr up` deploys. Every option is described in ../nix/README.md.
#
#   web  busybox httpd serving a static page and /healthz, a supervised process
#   api  busybox httpd with CGI endpoints returning JSON; its health check runs a CGI script
#   vm   a QEMU microVM: the Debian cloud kernel, a busybox initramfs, and an init that serves
#        HTTP on port 8080 inside the guest (forwarded to 8082 on the worker)
{ procurator, kernel, ... }:
let
  inherit (procurator) busybox mkProcessService mkGuestInit mkGuestInitrd mkToplevel;

  web = mkProcessService {
    name = "web";
    script = ''
      port="''${PORT:-8080}"
      echo "web: serving @out@/share/web/www on port $port"
      exec httpd -f -v -p "$port" -h @out@/share/web/www
    '';
    files = {
      "www/index.html" = ''
        <!doctype html>
        <title>Procurator example</title>
        <h1>Hello from the Procurator example cluster</h1>
        <p>This page is served by busybox httpd from a Nix store path.</p>
      '';
      "www/healthz" = "ok\n";
    };
  };

  api = mkProcessService {
    name = "api";
    script = ''
      port="''${PORT:-8081}"
      echo "api: serving on port $port"
      exec httpd -f -v -p "$port" -h @out@/share/api/www
    '';
    files = {
      # busybox httpd runs anything under cgi-bin/ with the request in the environment.
      "www/cgi-bin/health" = {
        executable = true;
        text = ''
          #!${busybox}/bin/sh
          printf 'Content-Type: application/json\r\n\r\n'
          printf '{"status":"ok","machineUptimeSeconds":%s}\n' "$(cut -d. -f1 /proc/uptime)"
        '';
      };
      "www/cgi-bin/greeting" = {
        executable = true;
        text = ''
          #!${busybox}/bin/sh
          printf 'Content-Type: application/json\r\n\r\n'
          printf '{"greeting":"%s","query":"%s"}\n' "''${GREETING:-hello}" "''${QUERY_STRING:-}"
        '';
      };
    };
  };

  # The page the microVM serves, from the shared store.
  vmSite = mkProcessService {
    name = "vm-site";
    script = ''exec httpd -f -v -p "''${PORT:-8080}" -h @out@/share/vm-site/www'';
    files = {
      "www/index.html" = "<!doctype html><title>Procurator microVM</title><h1>Hello from inside a microVM</h1>\n";
      "www/healthz" = "ok\n";
    };
  };

  vm = mkToplevel {
    name = "vm-toplevel";
    kernel = "${kernel}/vmlinuz";
    initrd = "${mkGuestInitrd { kernelModules = kernel; }}/initrd";
    init = mkGuestInit {
      name = "vm";
      script = ''
        export PORT=8080
        exec ${vmSite}/bin/vm-site
      '';
    };
    kernelParams = [ "console=ttyS0" "quiet" "panic=-1" ];
  };
in
{
  cluster.name = "example";
  cluster.strategy = "spread";

  cluster.vms.web = {
    # One replica: the workers `pcr up` starts all share this machine's network, where two
    # copies would both want port 8080. On a cluster of machines raise it; the scheduler puts
    # replicas that need the same host port on different workers.
    replicas = 1;
    cpu = 1;
    memory = 128;
    package = web;
    env.PORT = "8080";
    ports.http.guest = 8080;
    labels.tier = "frontend";
    deployment.healthChecks = [
      { type = "http"; port = 8080; path = "/healthz"; intervalMs = 500; timeoutMs = 500; gracePeriodMs = 1000; }
    ];
  };

  cluster.vms.api = {
    cpu = 1;
    memory = 128;
    package = api;
    env = { PORT = "8081"; GREETING = "hello from the example api"; };
    ports.http.guest = 8081;
    labels.tier = "backend";
    deployment.healthChecks = [
      { type = "http"; port = 8081; path = "/cgi-bin/health"; intervalMs = 500; timeoutMs = 500; gracePeriodMs = 1000; }
    ];
  };

  cluster.vms.vm = {
    cpu = 1;
    memory = 256;
    package = vm;
    ports.http = { guest = 8080; host = 8082; };
    deployment = {
      backend = "qemu";
      # TCG boots in a few seconds; give the first probe room.
      healthChecks = [
        { type = "http"; port = 8080; path = "/healthz"; intervalMs = 1000; timeoutMs = 1000; gracePeriodMs = 10000; }
      ];
      rollout.healthyDeadlineMs = 120000;
    };
  };
}
