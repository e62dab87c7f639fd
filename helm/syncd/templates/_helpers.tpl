{{/* ------------------------------------------------------------------ names and labels */}}

{{- define "syncd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "syncd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "syncd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the daemon's pods (Deployment selector: immutable, keep stable). */}}
{{- define "syncd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "syncd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: daemon
{{- end -}}

{{- define "syncd.labels" -}}
helm.sh/chart: {{ include "syncd.chart" . }}
{{ include "syncd.selectorLabels" . }}
app.kubernetes.io/version: {{ include "syncd.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: syncd
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The probe's pods: a component of their own, so the daemon's Service never selects them. */}}
{{- define "syncd.probeSelectorLabels" -}}
app.kubernetes.io/name: {{ include "syncd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: probe
{{- end -}}

{{- define "syncd.probeLabels" -}}
{{ include "syncd.labels" . | replace "app.kubernetes.io/component: daemon" "app.kubernetes.io/component: probe" }}
{{- end -}}

{{- define "syncd.probeFullname" -}}
{{- printf "%s-probe" (include "syncd.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "syncd.probeServiceAccountName" -}}
{{- if .Values.probe.serviceAccount.create -}}
{{- default (include "syncd.probeFullname" .) .Values.probe.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.probe.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "syncd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "syncd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "syncd.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "syncd.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "syncd.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------------ paths */}}

{{- define "syncd.configDir" -}}/etc/syncd/config{{- end -}}
{{- define "syncd.configFile" -}}{{ include "syncd.configDir" . }}/syncd.toml{{- end -}}
{{- define "syncd.secretsDir" -}}/etc/syncd/secrets{{- end -}}
{{- define "syncd.configMapsDir" -}}/etc/syncd/configmaps{{- end -}}

{{/*
A duration of the TOML (a number of seconds, or "30s", "5m", "1h30m", "250ms") in seconds,
as a float64 string. Used for terminationGracePeriodSeconds.
*/}}
{{- define "syncd.durationSeconds" -}}
{{- $v := . -}}
{{- $total := 0.0 -}}
{{- if kindIs "string" $v -}}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?$" $v -}}
{{- $total = float64 $v -}}
{{- else -}}
{{- $units := dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 "d" 86400.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)" (replace " " "" $v) -1 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $total = addf $total (mulf (float64 $num) (get $units (trimPrefix $num .))) -}}
{{- end -}}
{{- end -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $total = float64 $v -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{- define "syncd.drainSeconds" -}}
{{- $daemon := .Values.config.daemon | default dict -}}
{{- $drain := 10.0 -}}
{{- if and (hasKey $daemon "drain_timeout") (not (kindIs "invalid" $daemon.drain_timeout)) -}}
{{- $drain = include "syncd.durationSeconds" $daemon.drain_timeout | float64 -}}
{{- end -}}
{{- $drain -}}
{{- end -}}

{{- define "syncd.terminationGracePeriodSeconds" -}}
{{- $drain := include "syncd.drainSeconds" . | float64 -}}
{{- add (int64 (ceil $drain)) (int64 .Values.terminationGracePeriodMargin) -}}
{{- end -}}

{{/* ------------------------------------------------------------------ file and secret references

A reference in the config values is a map with existingSecret+key or existingConfigMap+key.
Each referenced Secret/ConfigMap is mounted once, read-only, as a directory holding only the
referenced keys; the TOML gets the file's path. Keys named in SECRET_REF_FIELDS take a secret
reference in the TOML ({ file = "..." }); every other reference becomes a plain path string.
*/}}

{{- define "syncd.refPath" -}}
{{- if hasKey . "existingSecret" -}}
{{- printf "%s/%s/%s" (include "syncd.secretsDir" .) .existingSecret .key -}}
{{- else -}}
{{- printf "%s/%s/%s" (include "syncd.configMapsDir" .) .existingConfigMap .key -}}
{{- end -}}
{{- end -}}

{{- define "syncd.isRef" -}}
{{- if and (kindIs "map" .) (hasKey . "key") (or (hasKey . "existingSecret") (hasKey . "existingConfigMap")) -}}true{{- end -}}
{{- end -}}

{{/*
Transform a values subtree into its TOML data: drop nulls, turn references into paths.
Input: dict "v" <value> "field" <key name>. Output: JSON {"v": <transformed>}.
*/}}
{{- define "syncd.transform" -}}
{{- $v := .v -}}
{{- $secretFields := list "client_secret" "role_id" "secret_id" "private_key" "private_key_passphrase" "client_assertion" -}}
{{- if include "syncd.isRef" $v -}}
{{- $path := include "syncd.refPath" $v -}}
{{- if has .field $secretFields -}}
{{- dict "v" (dict "file" $path) | toJson -}}
{{- else -}}
{{- dict "v" $path | toJson -}}
{{- end -}}
{{- else if kindIs "map" $v -}}
{{- $out := dict -}}
{{- range $k, $item := $v -}}
{{- if not (kindIs "invalid" $item) -}}
{{- $_ := set $out $k (include "syncd.transform" (dict "v" $item "field" $k) | fromJson).v -}}
{{- end -}}
{{- end -}}
{{- dict "v" $out | toJson -}}
{{- else if kindIs "slice" $v -}}
{{- $out := list -}}
{{- range $item := $v -}}
{{- $out = append $out (include "syncd.transform" (dict "v" $item "field" "") | fromJson).v -}}
{{- end -}}
{{- dict "v" $out | toJson -}}
{{- else -}}
{{- dict "v" $v | toJson -}}
{{- end -}}
{{- end -}}

{{/* Every reference in a values subtree, one "secret|<name>|<key>" or "configMap|<name>|<key>" per line. */}}
{{- define "syncd.collectRefs" -}}
{{- if include "syncd.isRef" . -}}
{{- if hasKey . "existingSecret" }}
secret|{{ .existingSecret }}|{{ .key }}
{{- else }}
configMap|{{ .existingConfigMap }}|{{ .key }}
{{- end -}}
{{- else if kindIs "map" . -}}
{{- range $k, $item := . -}}
{{- include "syncd.collectRefs" $item -}}
{{- end -}}
{{- else if kindIs "slice" . -}}
{{- range $item := . -}}
{{- include "syncd.collectRefs" $item -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The Secrets and ConfigMaps to mount, as JSON:
{"secrets": {"<name>": ["key", ...]}, "configMaps": {"<name>": ["key", ...]}}, keys sorted and unique.
*/}}
{{- define "syncd.refVolumes" -}}
{{- include "syncd.refVolumesOf" (dict "stores" .Values.config.stores "credentials" .Values.config.credentials) -}}
{{- end -}}

{{/* The same for the probe's pod: the stores' references only (probe.stores merged over them), never a credential's. */}}
{{- define "syncd.probeRefVolumes" -}}
{{- $stores := mergeOverwrite (deepCopy (.Values.config.stores | default dict)) (deepCopy (.Values.probe.stores | default dict)) -}}
{{- include "syncd.refVolumesOf" (dict "stores" $stores) -}}
{{- end -}}

{{- define "syncd.refVolumesOf" -}}
{{- $secrets := dict -}}
{{- $configMaps := dict -}}
{{- $lines := include "syncd.collectRefs" . | trim -}}
{{- range $line := splitList "\n" $lines -}}
{{- if $line -}}
{{- $parts := splitList "|" $line -}}
{{- $kind := index $parts 0 -}}
{{- $name := index $parts 1 -}}
{{- $key := index $parts 2 -}}
{{- $into := ternary $secrets $configMaps (eq $kind "secret") -}}
{{- $_ := set $into $name (append (get $into $name | default (list)) $key | uniq | sortAlpha) -}}
{{- end -}}
{{- end -}}
{{- dict "secrets" $secrets "configMaps" $configMaps | toJson -}}
{{- end -}}

{{/* A stable volume name for a Secret, ConfigMap or directory: <prefix>-<8 hex of sha256>. */}}
{{- define "syncd.volumeName" -}}
{{- printf "%s-%s" .prefix (sha256sum .name | trunc 8) -}}
{{- end -}}

{{/* File stores, as JSON: {"<directory>": "<first store name using it>"}. */}}
{{- define "syncd.fileStoreDirs" -}}
{{- $dirs := dict -}}
{{- range $name := keys (.Values.config.stores | default dict) | sortAlpha -}}
{{- $store := get $.Values.config.stores $name -}}
{{- if and (kindIs "map" $store) (eq (toString (get $store "type")) "file") -}}
{{- $dir := get $store "directory" | toString | trimSuffix "/" -}}
{{- if not (hasKey $dirs $dir) -}}
{{- $_ := set $dirs $dir $name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $dirs | toJson -}}
{{- end -}}

{{/* "true" when the pod needs the Kubernetes API token (a vault store logs in with kubernetes auth from the default token path). */}}
{{- define "syncd.automountToken" -}}
{{- $sa := .Values.serviceAccount -}}
{{- if not (kindIs "invalid" $sa.automountServiceAccountToken) -}}
{{- $sa.automountServiceAccountToken -}}
{{- else -}}
{{- $need := false -}}
{{- range $name, $store := .Values.config.stores | default dict -}}
{{- if and (kindIs "map" $store) (eq (toString (get $store "type")) "vault") (kindIs "map" (get $store "auth")) -}}
{{- $auth := get $store "auth" -}}
{{- if and (eq (toString (get $auth "method")) "kubernetes") (or (not (hasKey $auth "jwt_file")) (kindIs "invalid" $auth.jwt_file)) -}}
{{- $need = true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $need -}}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------------ checks the schema cannot express */}}

{{- define "syncd.validate" -}}
{{- $cfg := .Values.config -}}
{{- if not $cfg.credentials -}}
{{- fail "config.credentials is empty: add at least one credential (see values.yaml and docs/kubernetes.md); syncd refuses to start without one" -}}
{{- end -}}
{{- $stores := $cfg.stores | default dict -}}
{{- $names := dict -}}
{{- range $i, $cred := $cfg.credentials -}}
{{- if hasKey $names $cred.name -}}
{{- fail (printf "config.credentials[%d].name: duplicate credential name %q" $i $cred.name) -}}
{{- end -}}
{{- $_ := set $names $cred.name true -}}
{{- range $j, $t := $cred.targets -}}
{{- if not (hasKey $stores $t.store) -}}
{{- fail (printf "config.credentials[%d].targets[%d].store: unknown store %q (defined in config.stores: %s)" $i $j $t.store (keys $stores | sortAlpha | join ", " | default "none")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $dir, $store := include "syncd.fileStoreDirs" . | fromJson -}}
{{- if or (eq $dir "/etc/syncd") (hasPrefix "/etc/syncd/" $dir) (eq $dir "/tmp") (eq $dir "/") -}}
{{- fail (printf "config.stores.%s.directory: %q is used by the chart; choose another directory (e.g. /var/run/syncd)" $store $dir) -}}
{{- end -}}
{{- end -}}
{{- end -}}
