from django.urls import path

from . import views

urlpatterns = [
    path("models", views.models, name="gateway-models"),
    path("models/<str:model>", views.models, name="gateway-model"),
    path("completions", views.completions, name="gateway-completions"),
    path("chat/completions", views.chat_completions, name="gateway-chat-completions"),
]
