{{/* Labels on every object: those of deploy/, plus Helm's bookkeeping. */}}
{{- define "ferrolb.labels" -}}
app.kubernetes.io/part-of: ferrolb
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "ferrolb.controller.image" -}}
{{ .Values.controller.image.repository }}:{{ .Values.controller.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "ferrolb.speaker.image" -}}
{{ .Values.speaker.image.repository }}:{{ .Values.speaker.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Scheduling fields shared by both workloads; pass a component's values. */}}
{{- define "ferrolb.scheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
