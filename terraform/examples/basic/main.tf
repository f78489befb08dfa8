# A Rotor project with two channel namespaces and a server API key.
#
#   export ROTOR_ENDPOINT=http://127.0.0.1:8080   # the control plane
#   export ROTOR_TOKEN=rtr_...                     # a management token (POST /v1/tokens)
#   terraform apply
#
# See the "Terraform" section of the README for building the provider and the CLI config
# that points Terraform at it.

terraform {
  required_providers {
    rotor = {
      source = "rotor/rotor"
    }
  }
}

# endpoint and token default to ROTOR_ENDPOINT and ROTOR_TOKEN.
provider "rotor" {}

resource "rotor_project" "app" {
  name   = "Chat App"
  engine = "memory" # or "redis"; changing it replaces the project
}

# Chat rooms: presence, join/leave events, and 5 minutes of history that reconnecting
# clients recover automatically. Options left out keep Centrifugo's defaults.
resource "rotor_namespace" "chat" {
  project_id = rotor_project.app.id
  name       = "chat"

  presence                      = true
  join_leave                    = true
  history_size                  = 50
  history_ttl                   = "300s"
  force_recovery                = true
  allow_subscribe_for_client    = true
  allow_presence_for_subscriber = true
}

# A read-only news feed any connected client may subscribe to.
resource "rotor_namespace" "news" {
  project_id                 = rotor_project.app.id
  name                       = "news"
  allow_subscribe_for_client = true
}

# The key your backend publishes with (X-API-Key on the server API).
resource "rotor_api_key" "backend" {
  project_id = rotor_project.app.id
  name       = "backend"
}

output "websocket_endpoint" {
  value = rotor_project.app.endpoints.websocket
}

output "api_endpoint" {
  value = rotor_project.app.endpoints.api
}

output "api_key" {
  value     = rotor_api_key.backend.key
  sensitive = true
}

output "token_hmac_secret" {
  value     = rotor_project.app.token_hmac_secret
  sensitive = true
}
