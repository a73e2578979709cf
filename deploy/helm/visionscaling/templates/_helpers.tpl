{{- define "vs.name" -}}{{ .Release.Name }}-visionscaling{{- end -}}
{{- define "vs.labels" -}}
app.kubernetes.io/name: visionscaling
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "vs.secretName" -}}{{ .Values.existingSecret | default (printf "%s-credentials" (include "vs.name" .)) }}{{- end -}}
{{- define "vs.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "vs.name" . }}-settings
env:
  - name: DATABASE_URL
    valueFrom:
      secretKeyRef: {name: {{ include "vs.secretName" . }}, key: {{ .Values.databaseUrlKey }}}
  - name: AWS_ACCESS_KEY_ID
    valueFrom:
      secretKeyRef: {name: {{ include "vs.secretName" . }}, key: AWS_ACCESS_KEY_ID, optional: true}
  - name: AWS_SECRET_ACCESS_KEY
    valueFrom:
      secretKeyRef: {name: {{ include "vs.secretName" . }}, key: AWS_SECRET_ACCESS_KEY, optional: true}
  - name: KAFKA_SASL_PASSWORD
    valueFrom:
      secretKeyRef: {name: {{ include "vs.secretName" . }}, key: KAFKA_SASL_PASSWORD, optional: true}
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
