"""Mail in and out: parsing incoming mails (``parse``) and composing outgoing ones."""
