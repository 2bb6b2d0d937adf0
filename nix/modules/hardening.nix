# systemd sandboxing shared by the Procurator services that need nothing of the host beyond
# their state directory and the network. The worker, which starts VMs and writes /nix/store,
# uses a looser set of its own (./worker.nix).
{
  NoNewPrivileges = true;
  ProtectSystem = "strict";
  ProtectHome = true;
  PrivateTmp = true;
  PrivateDevices = true;
  ProtectKernelTunables = true;
  ProtectKernelModules = true;
  ProtectKernelLogs = true;
  ProtectControlGroups = true;
  ProtectClock = true;
  ProtectHostname = true;
  ProtectProc = "invisible";
  RestrictNamespaces = true;
  RestrictRealtime = true;
  RestrictSUIDSGID = true;
  LockPersonality = true;
  MemoryDenyWriteExecute = true;
  RemoveIPC = true;
  CapabilityBoundingSet = "";
  AmbientCapabilities = "";
  SystemCallArchitectures = "native";
  SystemCallFilter = [ "@system-service" "~@privileged" ];
  RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
  UMask = "0077";
}
