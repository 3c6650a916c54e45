"""The audience sync: a warehouse audience as a member trait (custom_data) and as a Client Defined Segment."""
