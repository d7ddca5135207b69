{{/* The Gateway's name, also the name of its parameters ConfigMap, DestinationRule and Ingress. */}}
{{- define "infra-demo.gatewayName" -}}
{{- $default := printf "%s-inference-gateway" .Release.Name -}}
{{- default $default .Values.gateway.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The Service Istio creates for a Gateway: `<gateway>-<class>`. */}}
{{- define "infra-demo.gatewayService" -}}
{{- if eq .Values.gateway.gatewayClassName "istio" -}}
{{- printf "%s-istio" (include "infra-demo.gatewayName" .) -}}
{{- else -}}
{{- include "infra-demo.gatewayName" . -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; the name label says llm-d-infra, the chart this one stands in for. */}}
{{- define "infra-demo.labels" -}}
app.kubernetes.io/name: {{ default "llm-d-infra" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/gateway: {{ include "infra-demo.gatewayName" . }}
{{- end -}}

{{- define "infra-demo.istio" -}}
{{- if eq .Values.gateway.gatewayClassName "istio" }}true{{ end -}}
{{- end -}}
