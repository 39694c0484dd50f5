from api.routers.approvals import decide  # TEMP: replaced by the approvals service at merge

__all__ = ["decide"]
