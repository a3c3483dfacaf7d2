//! Why a directive is not translated: one sentence per family of systemd settings, so
//! every note names what arje lacks rather than just "unsupported".

/// The reason for a directive the converter does not translate, by section and key.
pub fn untranslated(section: &str, key: &str) -> String {
    let reason = match (section, key) {
        (_, k) if k.starts_with("Limit") => {
            "not one of systemd's resource limits (systemd.exec(5) lists LimitCPU= to LimitRTTIME=)"
        }
        (_, k) if k.starts_with("Condition") || k.starts_with("Assert") => {
            "arje starts a card's commands unconditionally; check the condition in the command or leave the unit out"
        }
        (_, k) if k.starts_with("Protect")
            || k.starts_with("Private")
            || k.starts_with("Restrict")
            || k.starts_with("ReadWrite")
            || k.starts_with("ReadOnly")
            || k.starts_with("Inaccessible")
            || k.starts_with("ExecPaths")
            || k.starts_with("NoExecPaths")
            || k.starts_with("Bind")
            || k.starts_with("TemporaryFileSystem")
            || k.starts_with("RootDirectory")
            || k.starts_with("RootImage")
            || k.starts_with("MountAPIVFS")
            || k.starts_with("ProcSubset")
            || k == "NoNewPrivileges"
            || k == "LockPersonality"
            || k == "MemoryDenyWriteExecute"
            || k == "RemoveIPC"
            || k == "KeyringMode"
            || k.starts_with("SystemCall")
            || k.starts_with("IPAddress")
            || k.starts_with("Device")
            || k.starts_with("SocketBind")
            || k.starts_with("NetworkNamespace")
            || k.starts_with("IPCNamespace")
            || k == "MountFlags"
            || k == "DynamicUser" =>
        {
            "arje has no sandboxing (namespaces, seccomp, device or address filters)"
        }
        (_, k) if k.contains("Capabilit") || k == "SecureBits" => {
            "arje does not change capabilities: the command gets those of its user"
        }
        (_, "AppArmorProfile" | "SELinuxContext" | "SmackProcessLabel") => {
            "arje sets no security label"
        }
        (_, "Nice" | "CPUSchedulingPolicy" | "CPUSchedulingPriority" | "CPUSchedulingResetOnFork"
            | "CPUAffinity" | "NUMAPolicy" | "NUMAMask" | "IOSchedulingClass"
            | "IOSchedulingPriority" | "OOMScoreAdjust" | "OOMPolicy" | "CoredumpFilter"
            | "TimerSlackNSec" | "Personality" | "UMask" | "ManagedOOMSwap"
            | "ManagedOOMMemoryPressure" | "ManagedOOMPreference" | "StartupCPUWeight"
            | "StartupIOWeight" | "AllowedCPUs" | "AllowedMemoryNodes") => {
            "cards have no per-process scheduling, OOM score or umask settings"
        }
        (_, "CPUShares" | "StartupCPUShares" | "BlockIOWeight" | "BlockIOAccounting"
            | "BlockIODeviceWeight" | "BlockIOReadBandwidth" | "BlockIOWriteBandwidth"
            | "IOReadBandwidthMax" | "IOWriteBandwidthMax" | "IOReadIOPSMax" | "IOWriteIOPSMax"
            | "IODeviceWeight" | "IODeviceLatencyTargetSec" | "MemoryMin" | "MemoryLow"
            | "MemoryZSwapMax" | "Delegate" | "DisableControllers" | "Slice") => {
            "a workspace has one cgroup with the limits of docs/CARDS.md; this one is not among them"
        }
        (_, "ExecStop" | "ExecStopPost") => {
            "arje stops a command with its stop_signal (KillSignal=) and runs no stop command"
        }
        (_, "ExecReload") => {
            "arje runs no reload command: `shuma reload WORKSPACE/NAME` sends the main process SIGHUP"
        }
        (_, "ExecCondition") => "arje runs no condition command before a start",
        (_, "PIDFile" | "GuessMainPID") => {
            "arje supervises the process it starts and reads no PID file (Type=forking is run as a task)"
        }
        (_, "BusName") => "arje does not watch D-Bus names",
        (_, "SuccessExitStatus" | "RestartPreventExitStatus" | "RestartForceExitStatus") => {
            "arje's restart policy cannot single out exit statuses"
        }
        (_, "SendSIGKILL" | "SendSIGHUP" | "FinalKillSignal" | "RestartKillSignal"
            | "WatchdogSignal" | "TimeoutAbortSec" | "TimeoutStartFailureMode"
            | "TimeoutStopFailureMode" | "RuntimeMaxSec" | "RuntimeRandomizedExtraSec") => {
            "arje stops with stop_signal, then SIGKILL after stop_grace, and has no other timeouts"
        }
        (_, "TTYPath" | "TTYReset" | "TTYVHangup" | "TTYVTDisallocate" | "TTYRows"
            | "TTYColumns" | "StandardInputText" | "StandardInputData" | "UtmpIdentifier"
            | "UtmpMode" | "IgnoreSIGPIPE" | "PAMName") => {
            "arje gives a command no terminal, utmp record, PAM session or signal dispositions of its own"
        }
        (_, "SyslogIdentifier" | "SyslogFacility" | "SyslogLevel" | "SyslogLevelPrefix"
            | "LogLevelMax" | "LogExtraFields" | "LogRateLimitIntervalSec"
            | "LogRateLimitBurst" | "LogFilterPatterns" | "LogNamespace") => {
            "arje's log rings keep the raw output, without journal or syslog metadata"
        }
        (_, k) if k.starts_with("LoadCredential")
            || k.starts_with("SetCredential")
            || k.starts_with("ImportCredential") =>
        {
            "arje has no credentials store"
        }
        (_, "PassEnvironment" | "UnsetEnvironment") => {
            "a card's environment is exactly its env: nothing is inherited from arje to pass or unset"
        }
        (_, "SupplementaryGroups") => {
            "a card's command gets the groups that list its user (initgroups), and cannot add others"
        }
        (_, "FileDescriptorStoreMax" | "FileDescriptorStorePreserve" | "Sockets"
            | "USBFunctionDescriptors" | "USBFunctionStrings" | "OpenFile") => {
            "arje passes no file descriptors to a command (no socket activation)"
        }
        (_, "NotifyAccess") => "arje accepts notifications from the service's main process only",
        (_, "Requisite" | "PartOf" | "Upholds" | "Conflicts" | "OnFailure" | "OnSuccess"
            | "PropagatesReloadTo" | "ReloadPropagatedFrom" | "JoinsNamespaceOf"
            | "RequiresMountsFor" | "OnFailureJobMode" | "StopWhenUnneeded"
            | "RefuseManualStart" | "RefuseManualStop" | "AllowIsolate" | "IgnoreOnIsolate"
            | "CollectMode" | "JobTimeoutSec" | "JobRunningTimeoutSec" | "JobTimeoutAction"
            | "JobTimeoutRebootArgument" | "StartLimitAction" | "FailureAction"
            | "SuccessAction" | "FailureActionExitStatus" | "SuccessActionExitStatus"
            | "RebootArgument" | "SourcePath" | "SurviveFinalKillSignal") => {
            "cards have after, requires and wants only: no jobs, conflicts or unit actions"
        }
        (_, "ExitType") => "arje follows the process it started, not the last of a cgroup",
        (_, "RestartSteps" | "RestartMaxDelaySec") => {
            "the card's backoff doubles each time; systemd's steps are not translated"
        }
        (_, "NonBlocking") => "arje passes no file descriptors to a command",
        (_, "Environment" | "EnvironmentFile") => "could not be translated",
        _ => "not a setting this converter knows (docs/UNITS.md lists the ones it translates)",
    };
    reason.to_string()
}

/// `ExecReload=` that only sends the main process SIGHUP (`/bin/kill -HUP $MAINPID`, as
/// ssh.service and many others say): exactly what `shuma reload` does.
pub fn is_sighup_to_main(value: &str) -> bool {
    let words: Vec<&str> = value.split_whitespace().collect();
    let kill = |w: &str| matches!(w, "kill" | "/bin/kill" | "/usr/bin/kill");
    matches!(
        words.as_slice(),
        [k, "-HUP" | "-SIGHUP" | "-1", "$MAINPID" | "${MAINPID}"] if kill(k)
    ) || matches!(
        words.as_slice(),
        [k, "-s", "HUP" | "SIGHUP", "$MAINPID" | "${MAINPID}"] if kill(k)
    )
}

/// Settings that need no card field: they describe the unit to people, or what arje
/// does anyway (docs/UNITS.md, "Translated as nothing").
pub fn silent(section: &str, key: &str) -> bool {
    matches!(
        (section, key),
        (
            "Unit",
            "Description" | "Documentation" | "DefaultDependencies"
        ) | ("Service", "GuessMainPID")
    ) || key.ends_with("Accounting")
}

/// Units arje's own boot and shutdown stand for: a card is loaded once arje has made its
/// early mounts and stopped before it shuts down, so ordering against these is met.
pub fn implicit_unit(name: &str) -> bool {
    matches!(
        name,
        "sysinit.target"
            | "basic.target"
            | "shutdown.target"
            | "final.target"
            | "umount.target"
            | "reboot.target"
            | "poweroff.target"
            | "halt.target"
            | "-.mount"
            | "systemd-journald.socket"
            | "systemd-journald.service"
    )
}

/// Why a dependency on `name`, which is not among the converted units, is dropped.
pub fn dropped_dependency(name: &str) -> String {
    let kind = name.rsplit_once('.').map_or("", |(_, k)| k);
    match kind {
        "target" => format!(
            "{name} is a systemd target; arje has none: it starts a card's commands when the card is loaded"
        ),
        "socket" => format!("{name}: socket activation is not supported"),
        "service" => format!(
            "{name} is not among the converted units (convert it into the same card to keep this)"
        ),
        "mount" | "automount" | "swap" | "device" => {
            format!("{name}: arje does not order commands after mounts or devices")
        }
        "slice" => format!("{name}: a workspace is its own cgroup"),
        "path" | "timer" => format!("{name}: arje has no path or timer units"),
        _ => format!("{name} is not among the converted units"),
    }
}
