{{- define "vs.name" -}}{{ .Release.Name }}-visionscaling{{- end -}}
{{- define "vs.labels" -}}
app.kubernetes.io/name: visionscaling
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "vs.secretName" -}}{{ .Values.existingSecret | default (printf "%s-credentials" (include "vs.name" .)) }}{{- end -}}
{{- /* a pod's environment: (dict "root" . "kafkaUser" "worker"|"producer"|"monitor"|""
       "databaseUrlKey" KEY-or-""), each component with its own principal and login if given */ -}}
{{- define "vs.env" -}}
{{- $dbKey := .databaseUrlKey | default .root.Values.databaseUrlKey -}}
{{- $user := index .root.Values.security.kafkaUsers .kafkaUser | default dict -}}
{{- $sec := .root.Values.security -}}
{{- with .root -}}
envFrom:
  - configMapRef:
      name: {{ include "vs.name" . }}-settings
env:
  - name: DATABASE_URL
    valueFrom:
      secretKeyRef: {name: {{ include "vs.secretName" . }}, key: {{ $dbKey }}}
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef: {name: {{ include "vs.secretName" . }}, key: AWS_ACCESS_KEY_ID, optional: true}
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef: {name: {{ include "vs.secretName" . }}, key: AWS_SECRET_ACCESS_KEY, optional: true}
  {{- if $user.username }}
  # this component's own principal, with only its own ACLs (docs/deploying/security.md)
  - name: KAFKA_SASL_USERNAME
    value: {{ $user.username | quote }}
  {{- end }}
  - name: KAFKA_SASL_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ include "vs.secretName" . }}
        key: {{ ternary $user.passwordKey "KAFKA_SASL_PASSWORD" (not (empty $user.username)) }}
        optional: true
  {{- if $sec.caSecret }}
  - name: KAFKA_SSL_CAFILE
    value: /etc/visionscaling/ca/{{ $sec.caKey }}
  {{- if $sec.s3UsesCa }}
  - name: S3_CA_BUNDLE
    value: /etc/visionscaling/ca/{{ $sec.caKey }}
  {{- end }}
  {{- end }}
  {{- if $sec.clientCertSecret }}
  - name: KAFKA_SSL_CERTFILE
    value: /etc/visionscaling/client/tls.crt
  - name: KAFKA_SSL_KEYFILE
    value: /etc/visionscaling/client/tls.key
  {{- end }}
  - name: HOSTNAME
    valueFrom:
      fieldRef: {fieldPath: metadata.name}
  # the image's writable places: the ONNX export cache and Faust's data directory
  - name: HOME
    value: /tmp
  - name: MODEL_CACHE_DIR
    value: /tmp/visionscaling-cache
  - name: FAUST_DATADIR
    value: /tmp/visionscaling-faust
{{- end -}}
{{- end -}}
{{- /* the CA and client certificate, read-only, beside the writable /tmp */ -}}
{{- define "vs.mounts" -}}
- {name: tmp, mountPath: /tmp}
{{- if .Values.security.caSecret }}
- {name: ca, mountPath: /etc/visionscaling/ca, readOnly: true}
{{- end }}
{{- if .Values.security.clientCertSecret }}
- {name: client-cert, mountPath: /etc/visionscaling/client, readOnly: true}
{{- end }}
{{- end -}}
{{- define "vs.volumes" -}}
- {name: tmp, emptyDir: {}}
{{- if .Values.security.caSecret }}
- name: ca
  secret: {secretName: {{ .Values.security.caSecret }}, items: [{key: {{ .Values.security.caKey }}, path: {{ .Values.security.caKey }}}]}
{{- end }}
{{- if .Values.security.clientCertSecret }}
- name: client-cert
  secret: {secretName: {{ .Values.security.clientCertSecret }}, defaultMode: 0400}
{{- end }}
{{- end -}}
