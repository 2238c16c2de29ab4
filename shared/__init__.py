"""The licensing enforcement engine. Never imports azure.functions (triggers: function_app.py)."""
