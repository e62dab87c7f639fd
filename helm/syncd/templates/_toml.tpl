{{/*
syncd.toml from the structured values (config.*).

TOML rendering rules:
  strings   basic strings; escaping via JSON encoding, whose escapes (\" \\ \n \t \uXXXX ...)
            are all valid in TOML basic strings
  numbers   Helm reads every number as float64: integral values are written as integers
            (kv_version = 2, not 2.0), others as floats (refresh_at = 0.5)
  booleans  true / false
  arrays    [a, b]; the targets of a credential one inline table per line
  maps      below a [section]: inline tables { k = v }
  keys      bare when [A-Za-z0-9_-]+, else quoted
  null      the key is left out (syncd's default applies)
*/}}

{{- define "syncd.configData" -}}
{{- $cfg := (include "syncd.transform" (dict "v" .Values.config "field" "") | fromJson).v -}}
{{- $daemon := get $cfg "daemon" | default dict -}}
{{- $host := .Values.server.host -}}
{{- if contains ":" $host -}}
{{- $host = printf "[%s]" $host -}}
{{- end -}}
{{- $_ := set $daemon "listen" (printf "%s:%d" $host (int .Values.server.port)) -}}
{{- $_ := set $cfg "daemon" $daemon -}}
{{- if or .Values.probe.enabled (get $cfg "probe") -}}
{{- $probe := get $cfg "probe" | default dict -}}
{{- $_ := set $probe "listen" (printf "%s:%d" $host (int .Values.probe.port)) -}}
{{- $_ := set $cfg "probe" $probe -}}
{{- end -}}
{{- $cfg | toJson -}}
{{- end -}}

{{- define "syncd.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}
{{- . -}}
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{- define "syncd.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- ternary "true" "false" $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if and (eq (float64 $v) (floor $v)) (lt (float64 $v) 1e15) (gt (float64 $v) -1e15) -}}
{{- printf "%d" (int64 $v) -}}
{{- else -}}
{{- $v -}}
{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "int32" $v) (kindIs "uint64" $v) -}}
{{- $v -}}
{{- else if kindIs "map" $v -}}
{{- if not $v -}}
{}
{{- else -}}
{{- $parts := list -}}
{{- $first := list "store" "key" "method" "role" "role_id" "file" "env" -}}
{{- $order := list -}}
{{- range $k := $first -}}
{{- if hasKey $v $k -}}
{{- $order = append $order $k -}}
{{- end -}}
{{- end -}}
{{- range $k := keys $v | sortAlpha -}}
{{- if not (has $k $first) -}}
{{- $order = append $order $k -}}
{{- end -}}
{{- end -}}
{{- range $k := $order -}}
{{- $parts = append $parts (printf "%s = %s" (include "syncd.toml.key" $k) (include "syncd.toml.value" (get $v $k))) -}}
{{- end -}}
{{- printf "{ %s }" (join ", " $parts) -}}
{{- end -}}
{{- else if kindIs "slice" $v -}}
{{- $parts := list -}}
{{- range $item := $v -}}
{{- $parts = append $parts (include "syncd.toml.value" $item) -}}
{{- end -}}
{{- printf "[%s]" (join ", " $parts) -}}
{{- else -}}
{{- fail (printf "config: cannot write %v (%s) into syncd.toml" $v (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{/* The key = value lines of one table; `first` keys come first, `last` keys last, the rest sorted. */}}
{{- define "syncd.toml.table" -}}
{{- $table := .table -}}
{{- $first := .first | default (list) -}}
{{- $last := .last | default (list) -}}
{{- $order := list -}}
{{- range $k := $first -}}
{{- if hasKey $table $k -}}
{{- $order = append $order $k -}}
{{- end -}}
{{- end -}}
{{- range $k := keys $table | sortAlpha -}}
{{- if not (or (has $k $first) (has $k $last)) -}}
{{- $order = append $order $k -}}
{{- end -}}
{{- end -}}
{{- range $k := $last -}}
{{- if hasKey $table $k -}}
{{- $order = append $order $k -}}
{{- end -}}
{{- end -}}
{{- range $k := $order -}}
{{- $v := get $table $k -}}
{{- if and (eq $k "targets") (kindIs "slice" $v) }}
targets = [
{{- range $t := $v }}
  {{ include "syncd.toml.value" $t }},
{{- end }}
]
{{- else }}
{{ include "syncd.toml.key" $k }} = {{ include "syncd.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "syncd.toml" -}}
{{- include "syncd.toml.render" (include "syncd.configData" . | fromJson) -}}
{{- end -}}

{{/*
The probe's syncd.toml: the same credentials and targets, `probe.stores` merged over the
stores (its own read-only identity, e.g. another Vault role), and no client secret: the probe
never mints, so each credential gets an env reference that is never read, and no Secret
holding a client secret is mounted into its pod.
*/}}
{{- define "syncd.probeConfigData" -}}
{{- $cfg := include "syncd.configData" . | fromJson -}}
{{- $over := (include "syncd.transform" (dict "v" (.Values.probe.stores | default dict) "field" "") | fromJson).v -}}
{{- $_ := set $cfg "stores" (mergeOverwrite (get $cfg "stores" | default dict) $over) -}}
{{- $creds := list -}}
{{- range $c := get $cfg "credentials" | default (list) -}}
{{- $c = omit $c "client_secret" "service_account_file" "ca_bundle" "client_cert" "client_key" -}}
{{- $_ := set $c "client_id" (get $c "client_id" | default (get $c "name")) -}}
{{- $_ := set $c "client_secret" (dict "env" "SYNCD_PROBE_READS_NO_CLIENT_SECRET") -}}
{{- $creds = append $creds $c -}}
{{- end -}}
{{- $_ := set $cfg "credentials" $creds -}}
{{- $cfg | toJson -}}
{{- end -}}

{{- define "syncd.probeToml" -}}
{{- include "syncd.toml.render" (include "syncd.probeConfigData" . | fromJson) -}}
{{- end -}}

{{/* Emit the TOML of a config data map (from syncd.configData or syncd.probeConfigData). */}}
{{- define "syncd.toml.render" -}}
{{- $cfg := . -}}
# syncd.toml, rendered by the syncd Helm chart from the values under `config`.
# Do not edit in the cluster: change the values and run `helm upgrade`.

[daemon]
{{- include "syncd.toml.table" (dict "table" (get $cfg "daemon") "first" (list "listen")) }}
{{- with get $cfg "probe" }}

[probe]
{{- include "syncd.toml.table" (dict "table" . "first" (list "listen")) }}
{{- end }}
{{- with get $cfg "defaults" }}

[defaults]
{{- include "syncd.toml.table" (dict "table" .) }}
{{- end }}
{{- $stores := get $cfg "stores" | default dict }}
{{- range $name := keys $stores | sortAlpha }}

[stores.{{ include "syncd.toml.key" $name }}]
{{- include "syncd.toml.table" (dict "table" (get $stores $name) "first" (list "type")) }}
{{- end }}
{{- range $cred := get $cfg "credentials" | default (list) }}

[[credentials]]
{{- include "syncd.toml.table" (dict "table" $cred "first" (list "name" "token_url" "client_id" "client_secret" "service_account_file") "last" (list "targets")) }}
{{- end }}
{{- end -}}
