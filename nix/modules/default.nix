# All Procurator service modules; each is off until `services.procurator.<name>.enable = true`.
{
  imports = [
    ./control-plane.nix
    ./worker.nix
    ./cache.nix
    ./ci-service.nix
    ./repohub.nix
  ];
}
